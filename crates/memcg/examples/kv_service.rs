//! A small multi-tenant key-value service on memcg.
//!
//! Every tenant is a group with a `memory.max`; worker threads serve requests
//! by entering the tenant's group, so the plain std collections holding the
//! tenant's values are charged to it by the global allocator. A tenant that
//! goes over its limit gets its writes refused (the service checks
//! `memory.current` against `memory.max`, as a real service would read
//! pressure); a deleted tenant's group is removed at once while values still
//! referenced by in-flight readers outlive it, their bytes carried by the
//! parent until the last reference goes.
//!
//! Run: `cargo run --release -p memcg --example kv_service`

use memcg::{global, Group, MemcgAlloc};
use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

/// One tenant's store: its values are `Arc<Vec<u8>>`, so readers can hold
/// them after the tenant is gone.
struct Tenant {
    group: Group,
    map: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

enum Request {
    Put {
        tenant: String,
        key: String,
        len: usize,
        reply: mpsc::Sender<Result<(), String>>,
    },
    Get {
        tenant: String,
        key: String,
        reply: mpsc::Sender<Option<Arc<Vec<u8>>>>,
    },
}

type Tenants = Arc<Mutex<HashMap<String, Arc<Tenant>>>>;

fn bytes(g: &Group, file: &str) -> u64 {
    g.read(file).unwrap().trim().parse().unwrap_or(u64::MAX)
}

fn serve(tenants: Tenants, rx: Arc<Mutex<mpsc::Receiver<Request>>>) {
    loop {
        let Ok(req) = rx.lock().unwrap().recv() else {
            return;
        };
        match req {
            Request::Put {
                tenant,
                key,
                len,
                reply,
            } => {
                let t = tenants.lock().unwrap().get(&tenant).cloned();
                let Some(t) = t else {
                    let _ = reply.send(Err(format!("no tenant {tenant}")));
                    continue;
                };
                // Everything allocated while serving is charged to the tenant.
                let _in = t.group.enter().unwrap();
                let result = if bytes(&t.group, "memory.current") + len as u64
                    > bytes(&t.group, "memory.max")
                {
                    Err(format!("{tenant}: over memory.max"))
                } else {
                    let value = Arc::new(vec![0xA5u8; len]);
                    t.map.lock().unwrap().insert(key, value);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Request::Get { tenant, key, reply } => {
                let t = tenants.lock().unwrap().get(&tenant).cloned();
                let v = t.and_then(|t| t.map.lock().unwrap().get(&key).cloned());
                let _ = reply.send(v);
            }
        }
    }
}

fn main() {
    let h = global();
    h.create("/tenants").unwrap();
    let tenants: Tenants = Arc::default();
    for (name, max) in [("acme", "2M"), ("globex", "1M"), ("initech", "4M")] {
        let group = h.create(&format!("/tenants/{name}")).unwrap();
        group.write("memory.max", max).unwrap();
        tenants.lock().unwrap().insert(
            name.to_string(),
            Arc::new(Tenant {
                group,
                map: Mutex::new(HashMap::new()),
            }),
        );
    }
    let (tx, rx) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (t, r) = (tenants.clone(), rx.clone());
            thread::spawn(move || serve(t, r))
        })
        .collect();

    // Load: each tenant writes 64 KiB values until refused or done.
    let mut refused = HashMap::<&str, usize>::new();
    for i in 0..60 {
        for tenant in ["acme", "globex", "initech"] {
            let (reply, answer) = mpsc::channel();
            let key = format!("k{i}");
            tx.send(Request::Put {
                tenant: tenant.into(),
                key,
                len: 64 << 10,
                reply,
            })
            .unwrap();
            if answer.recv().unwrap().is_err() {
                *refused.entry(tenant).or_default() += 1;
            }
        }
    }
    h.quiesce();
    println!("after the load:");
    for tenant in ["acme", "globex", "initech"] {
        let g = h.get(&format!("/tenants/{tenant}")).unwrap();
        println!(
            "  {tenant:8} memory.current {:>8}  memory.max {:>8}  refused writes {}",
            g.read("memory.current").unwrap().trim(),
            g.read("memory.max").unwrap().trim(),
            refused.get(tenant).unwrap_or(&0)
        );
    }

    // A reader holds one of globex's values; then globex is deleted.
    let (reply, answer) = mpsc::channel();
    tx.send(Request::Get {
        tenant: "globex".into(),
        key: "k3".into(),
        reply,
    })
    .unwrap();
    let held = answer.recv().unwrap().expect("globex has k3");
    let globex = tenants.lock().unwrap().remove("globex").unwrap();
    let group = globex.group.clone();
    drop(globex); // drops the map: every value but the held one is freed
    drop(group);
    h.remove("/tenants/globex").unwrap();
    h.quiesce();
    println!("\nglobex deleted while a reader holds one 64 KiB value:");
    println!(
        "  /tenants cgroup.stat: {}",
        h.read("/tenants", "cgroup.stat")
            .unwrap()
            .replace('\n', " ")
    );
    println!("  /tenants memory.stat:");
    for line in h.read("/tenants", "memory.stat").unwrap().lines() {
        println!("    {line}");
    }
    let with_value = bytes(&h.get("/tenants").unwrap(), "memory.current");
    drop(held);
    h.quiesce();
    let without = bytes(&h.get("/tenants").unwrap(), "memory.current");
    println!(
        "  the reader drops the value: /tenants memory.current {with_value} -> {without} ({} bytes uncharged from the parent)",
        with_value - without
    );

    drop(tx);
    for w in workers {
        w.join().unwrap();
    }
}
