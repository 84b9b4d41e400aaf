//! The cache: every watched object's [`Summary`] by [`Key`], plus the
//! reverse indexes the mapping looks things up in (by cluster, by pool, by
//! referenced Secret or ConfigMap). Pure data, no I/O; owned by the
//! dispatcher task alone, so it needs no lock.

use std::collections::HashMap;

use crate::mapping::ObjKind;
use crate::summary::{Key, Summary, Sym};

/// `(namespace, name)` of a cluster or a pool.
type Scoped = (Sym, Sym);

/// Summaries and reverse indexes.
#[derive(Default)]
pub struct Index {
    objects: HashMap<Key, Summary>,
    /// Objects of drover's kinds by `(namespace, cluster)`.
    by_cluster: HashMap<Scoped, Vec<Key>>,
    /// RemoteMachines by `(namespace, pool)`.
    by_pool: HashMap<Scoped, Vec<Key>>,
    /// Objects by the Secrets and ConfigMaps they read.
    by_use: HashMap<Key, Vec<Key>>,
    counts: [usize; ObjKind::ALL.len()],
}

fn add_to<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<Key>>, at: K, key: &Key) {
    let keys = map.entry(at).or_default();
    if !keys.contains(key) {
        keys.push(key.clone());
    }
}

fn remove_from<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<Key>>, at: &K, key: &Key) {
    if let Some(keys) = map.get_mut(at) {
        keys.retain(|k| k != key);
        if keys.is_empty() {
            map.remove(at);
        }
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The summary of `key`.
    pub fn get(&self, key: &Key) -> Option<&Summary> {
        self.objects.get(key)
    }

    /// Stores `summary`, returning the one it replaces.
    pub fn insert(&mut self, key: Key, summary: Summary) -> Option<Summary> {
        let old = self.remove(&key);
        if key.kind.job_kind().is_some()
            && let Some(c) = &summary.cluster
        {
            add_to(&mut self.by_cluster, (key.ns.clone(), c.clone()), &key);
        }
        if key.kind == ObjKind::RemoteMachine
            && let Some(p) = &summary.pool
        {
            add_to(&mut self.by_pool, (key.ns.clone(), p.clone()), &key);
        }
        for used in summary.uses.iter() {
            add_to(&mut self.by_use, used.clone(), &key);
        }
        self.counts[key.kind as usize] += 1;
        self.objects.insert(key, summary);
        old
    }

    /// Forgets `key`, returning its summary.
    pub fn remove(&mut self, key: &Key) -> Option<Summary> {
        let old = self.objects.remove(key)?;
        if let Some(c) = &old.cluster {
            remove_from(&mut self.by_cluster, &(key.ns.clone(), c.clone()), key);
        }
        if let Some(p) = &old.pool {
            remove_from(&mut self.by_pool, &(key.ns.clone(), p.clone()), key);
        }
        for used in old.uses.iter() {
            remove_from(&mut self.by_use, used, key);
        }
        self.counts[key.kind as usize] -= 1;
        Some(old)
    }

    /// Objects of drover's kinds in cluster `name` of namespace `ns`.
    pub fn in_cluster(&self, ns: &Sym, name: &Sym) -> &[Key] {
        self.by_cluster
            .get(&(ns.clone(), name.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// RemoteMachines of pool `name` in namespace `ns`.
    pub fn in_pool(&self, ns: &Sym, name: &Sym) -> &[Key] {
        self.by_pool
            .get(&(ns.clone(), name.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// Objects that read the Secret or ConfigMap `used`.
    pub fn users_of(&self, used: &Key) -> &[Key] {
        self.by_use.get(used).map_or(&[], Vec::as_slice)
    }

    /// How many objects of `kind` are cached.
    pub fn count(&self, kind: ObjKind) -> usize {
        self.counts[kind as usize]
    }

    /// Every cached key of `kind` (for resyncs and relists).
    pub fn keys_of(&self, kind: ObjKind) -> Vec<Key> {
        self.objects
            .keys()
            .filter(|k| k.kind == kind)
            .cloned()
            .collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Bytes held, an estimate (hash tables at capacity, names, summaries),
    /// for the memory test. Interned strings are counted by the interner.
    pub fn approx_bytes(&self) -> usize {
        let key = size_of::<Key>();
        let slot = |entry: usize| entry + 1; // hashbrown: one control byte per slot
        let objects = self.objects.capacity() * slot(key + size_of::<Summary>())
            + self
                .objects
                .iter()
                .map(|(k, s)| k.name.len() + 16 + s.approx_bytes() - size_of::<Summary>())
                .sum::<usize>();
        let scoped = |m: &HashMap<Scoped, Vec<Key>>| {
            m.capacity() * slot(size_of::<Scoped>() + size_of::<Vec<Key>>())
                + m.values().map(|v| v.capacity() * key).sum::<usize>()
        };
        let uses = self.by_use.capacity() * slot(key + size_of::<Vec<Key>>())
            + self
                .by_use
                .values()
                .map(|v| v.capacity() * key)
                .sum::<usize>();
        objects + scoped(&self.by_cluster) + scoped(&self.by_pool) + uses
    }
}

/// Synthetic caches for the memory estimate (the unit test below and
/// `examples/index_memory.rs`).
#[doc(hidden)]
pub mod synthetic {
    use std::sync::Arc;

    use super::Index;
    use crate::mapping::ObjKind;
    use crate::summary::{Flags, Interner, Key, Summary};

    /// A cache of `n` objects shaped like a fleet: clusters of 100 objects
    /// (a Cluster, its infrastructure and control plane, 30 Machines with a
    /// worker config and a RemoteMachine each, 7 Secrets), 20 clusters per
    /// namespace, and the strings a real object would carry (36-character
    /// uids, 8-digit resourceVersions, 30-character names).
    pub fn fleet(n: usize, interner: &Interner) -> Index {
        let mut index = Index::new();
        for i in 0..n {
            let c = i / 100;
            let ns = interner.intern(&format!("tenant-{:04}", c / 20));
            let cluster = interner.intern(&format!("cluster-{c:06}"));
            let slot = i % 100;
            let (kind, name) = match slot {
                0 => (ObjKind::CapiCluster, cluster.to_string()),
                1 => (ObjKind::RemoteCluster, cluster.to_string()),
                2 => (ObjKind::K0sControlPlane, cluster.to_string()),
                3..=32 => (ObjKind::Machine, format!("{cluster}-md-0-{:08x}", i)),
                33..=62 => (
                    ObjKind::K0sWorkerConfig,
                    format!("{cluster}-md-0-{:08x}", i - 30),
                ),
                63..=92 => (
                    ObjKind::RemoteMachine,
                    format!("{cluster}-md-0-{:08x}", i - 60),
                ),
                _ => (ObjKind::Secret, format!("{cluster}-secret-{slot}")),
            };
            let name: Arc<str> = Arc::from(name.as_str());
            let secret = |s: &str| Key {
                kind: ObjKind::Secret,
                ns: ns.clone(),
                name: interner.intern(s),
            };
            let (uses, notifies): (Vec<Key>, Vec<Key>) = match kind {
                ObjKind::K0sWorkerConfig => (vec![secret(&format!("{cluster}-files"))], vec![]),
                ObjKind::RemoteMachine => (vec![secret("ssh-key")], vec![]),
                ObjKind::Machine => {
                    let other = |kind| Key {
                        kind,
                        ns: ns.clone(),
                        name: name.clone(),
                    };
                    (
                        vec![],
                        vec![
                            other(ObjKind::K0sWorkerConfig),
                            other(ObjKind::RemoteMachine),
                        ],
                    )
                }
                _ => (vec![], vec![]),
            };
            let summary = Summary {
                uid: format!("{:08x}-0000-4000-8000-{:012x}", i, i).into(),
                resource_version: format!("{:08}", 10_000_000 + i).into(),
                generation: Some(1),
                fingerprint: i as u64,
                related: 0,
                cluster: (kind != ObjKind::Secret).then(|| cluster.clone()),
                pool: (kind == ObjKind::RemoteMachine).then(|| interner.intern("pool-a")),
                flags: Flags::WAITING,
                uses: uses.into_boxed_slice(),
                notifies: notifies.into_boxed_slice(),
            };
            index.insert(
                Key {
                    kind,
                    ns: ns.clone(),
                    name,
                },
                summary,
            );
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::Interner;

    #[test]
    fn a_hundred_thousand_objects_fit_in_two_kib_each() {
        let interner = Interner::default();
        let n = 100_000;
        let index = synthetic::fleet(n, &interner);
        assert_eq!(index.len(), n);
        let bytes = index.approx_bytes() + interner.heap_bytes();
        let per_object = bytes / n;
        println!(
            "{n} objects: ~{} MiB, ~{per_object} bytes per object, {} interned strings",
            bytes >> 20,
            interner.len()
        );
        assert!(per_object < 2048, "{per_object} bytes per object");
        // The indexes answer what the mapping asks.
        let ns: Sym = "tenant-0000".into();
        let cluster: Sym = "cluster-000000".into();
        assert_eq!(
            index.in_cluster(&ns, &cluster).len(),
            62,
            "RemoteCluster, control plane, 30 configs and 30 RemoteMachines"
        );
        assert_eq!(index.in_pool(&ns, &"pool-a".into()).len(), 20 * 30);
        let key = Key {
            kind: ObjKind::Secret,
            ns: ns.clone(),
            name: "ssh-key".into(),
        };
        assert_eq!(index.users_of(&key).len(), 20 * 30);
    }

    #[test]
    fn removing_an_object_clears_its_index_entries() {
        let interner = Interner::default();
        let mut index = synthetic::fleet(100, &interner);
        for key in index.keys_of(ObjKind::RemoteMachine) {
            index.remove(&key);
        }
        assert_eq!(index.count(ObjKind::RemoteMachine), 0);
        let ns: Sym = "tenant-0000".into();
        assert!(index.in_pool(&ns, &"pool-a".into()).is_empty());
        let key = Key {
            kind: ObjKind::Secret,
            ns,
            name: "ssh-key".into(),
        };
        assert!(index.users_of(&key).is_empty());
        interner.prune();
    }
}
