//! Factories: how a suite gets backends, one isolated namespace per case.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use flatmachines_core::{
    ExecutionLock, PersistenceBackend, RegistrationBackend, ResultBackend, WorkBackend,
};
use futures::future::BoxFuture;

type Open<T> = dyn Fn(String) -> BoxFuture<'static, Result<Arc<T>, String>> + Send + Sync;

/// Opens backends of type `T` (a trait object such as `dyn PersistenceBackend`) by
/// **namespace**.
///
/// # Contract
///
/// 1. Backends opened with the same namespace share their data: a key saved through one is
///    loaded through the other, and two locks of one namespace contend for the same keys.
///    Each call still returns a separate handle (for locks: a separate holder).
/// 2. Backends opened with different namespaces share nothing.
/// 3. A namespace the factory has not seen starts empty.
///
/// Suites make up a fresh namespace for every case (`[a-z0-9_-]`, at most 64 bytes, unique
/// per call), so a factory usually maps it to a key prefix, a schema, a database number or a
/// directory. A factory that fails returns a message; the case then fails with it.
///
/// ```
/// use std::sync::Arc;
/// use flatmachines_conformance::PersistenceFactory;
/// use flatmachines_core::PersistenceBackend;
/// use flatmachines_memory::MemoryBackend;
///
/// // In-memory stores: one per namespace, shared by the handles opened for it.
/// let factory = PersistenceFactory::shared_per_namespace(|| {
///     Arc::new(MemoryBackend::new()) as Arc<dyn PersistenceBackend>
/// });
/// # drop(factory);
/// ```
pub struct Factory<T: ?Sized> {
    open: Arc<Open<T>>,
}

/// Opens [`PersistenceBackend`]s by namespace.
pub type PersistenceFactory = Factory<dyn PersistenceBackend>;
/// Opens [`ExecutionLock`]s by namespace; each call is a separate holder.
pub type LockFactory = Factory<dyn ExecutionLock>;
/// Opens [`ResultBackend`]s by namespace.
pub type ResultFactory = Factory<dyn ResultBackend>;
/// Opens [`RegistrationBackend`]s by namespace.
pub type RegistrationFactory = Factory<dyn RegistrationBackend>;
/// Opens [`WorkBackend`]s by namespace.
pub type WorkFactory = Factory<dyn WorkBackend>;

impl<T: ?Sized + Send + Sync + 'static> Factory<T> {
    /// A factory calling `open` with the namespace. The closure takes the namespace by value
    /// so that the future it returns owns everything it needs.
    pub fn new<F, Fut>(open: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<T>, String>> + Send + 'static,
    {
        Factory {
            open: Arc::new(move |namespace| Box::pin(open(namespace))),
        }
    }

    /// A factory for backends that live in this process: `make` creates the backend of a new
    /// namespace, and every later open of that namespace returns the same backend while any
    /// handle to it is alive. Once the last handle is dropped the namespace is forgotten, so
    /// suites do not accumulate memory.
    pub fn shared_per_namespace<F>(make: F) -> Self
    where
        F: Fn() -> Arc<T> + Send + Sync + 'static,
    {
        let live: Mutex<HashMap<String, Weak<T>>> = Mutex::default();
        let open = move |namespace: String| {
            // Entries are only inserted or pruned, so a poisoned map is still consistent.
            let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
            live.retain(|_, backend| backend.strong_count() > 0);
            let backend = match live.get(&namespace).and_then(Weak::upgrade) {
                Some(backend) => backend,
                None => {
                    let backend = make();
                    live.insert(namespace, Arc::downgrade(&backend));
                    backend
                }
            };
            futures::future::ready(Ok(backend))
        };
        Factory::new(open)
    }

    /// Opens the backend of `namespace`.
    pub async fn open(&self, namespace: &str) -> Result<Arc<T>, String> {
        (self.open)(namespace.to_owned()).await
    }
}

impl<T: ?Sized> Clone for Factory<T> {
    fn clone(&self) -> Self {
        Factory {
            open: Arc::clone(&self.open),
        }
    }
}

impl<T: ?Sized> fmt::Debug for Factory<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Factory")
            .field("backend", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shared_namespaces_live_as_long_as_a_handle() {
        let factory = Factory::<Mutex<u32>>::shared_per_namespace(|| Arc::new(Mutex::new(0)));
        let a = factory.open("a").await.unwrap();
        *a.lock().unwrap() = 7;
        assert_eq!(*factory.open("a").await.unwrap().lock().unwrap(), 7);
        assert_eq!(*factory.open("b").await.unwrap().lock().unwrap(), 0);
        drop(a);
        assert_eq!(*factory.open("a").await.unwrap().lock().unwrap(), 0);
        assert!(format!("{factory:?}").contains("Mutex"));
    }
}
