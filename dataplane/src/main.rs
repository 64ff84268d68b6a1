use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
fn main() {
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(2, None))
        .on_all_shards(|| async move {
            let id = glommio::executor().id();
            let l = glommio::net::TcpListener::bind("127.0.0.1:18830").unwrap();
            println!("shard {id} listening {:?}", l.local_addr());
        })
        .unwrap();
    handles.join_all();
}
