//! The first admin (web UI setup) on both engines: made only while no user and no key
//! exists, and only once when many ask at the same time.

use std::sync::Arc;

use crate::db::{TestDb, both_engines};

/// Eight concurrent setups through two independent stores (two gateways): one wins.
async fn only_one_first_admin_among_concurrent_setups(db: &TestDb) {
    let other = Arc::new(db.reopen());
    // Both open (and migrate) first: this test is about the setups racing.
    db.store.open().await.unwrap();
    other.open().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { db.store.clone() } else { other.clone() };
        tasks.push(tokio::spawn(
            async move { store.create_first_admin(&format!("admin{i}"), "password1").await },
        ));
    }
    let mut made = Vec::new();
    for t in tasks {
        if let Some(user) = t.await.unwrap().unwrap() {
            made.push(user);
        }
    }
    assert_eq!(made.len(), 1, "exactly one setup wins: {made:?}");
    assert!(made[0].admin);
    assert_eq!(db.count("SELECT COUNT(*) FROM users").await, 1);
    let again = db.store.create_first_admin("late", "password1").await.unwrap();
    assert_eq!(again, None, "setup is over once a user exists");
}

/// A store with an API key but no user is not fresh either.
async fn no_first_admin_once_a_user_exists(db: &TestDb) {
    db.store.create_user("ann", "password1", false).await.unwrap();
    assert_eq!(db.store.create_first_admin("root", "password1").await.unwrap(), None);
    assert!(db.store.create_first_admin("x y", "password1").await.is_err(), "names are checked first");
}

both_engines!(only_one_first_admin_among_concurrent_setups, no_first_admin_once_a_user_exists);
