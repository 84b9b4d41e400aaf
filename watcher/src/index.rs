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
