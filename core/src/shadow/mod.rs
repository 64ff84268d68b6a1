//! The AWS IoT device shadow document algebra (being built).
