//! Stored responses on both engines: ownership, expiry, deletion and the sweep.

use sluice_store::{StoreError, StoredResponse};

use crate::db::{TestDb, both_engines};

fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
        .unwrap()
}

fn response(id: &str, owner: &str, expires_at: i64) -> StoredResponse {
    StoredResponse {
        id: id.to_owned(),
        user_id: owner.to_owned(),
        input: r#"[{"role":"user","content":"hi"}]"#.to_owned(),
        response: format!(r#"{{"id":"{id}","object":"response"}}"#),
        created_at: now(),
        expires_at,
    }
}

/// Only the owner reads or deletes a response; to anyone else it is missing.
async fn only_the_owner_sees_a_response(db: &TestDb) {
    let s = &db.store;
    let day = 86_400_000;
    let r = response("resp_a", "alice", now() + day);
    s.put_response(&r).await.unwrap();
    assert_eq!(s.get_response("alice", "resp_a").await.unwrap(), Some(r.clone()));
    assert_eq!(s.get_response("bob", "resp_a").await.unwrap(), None);
    assert_eq!(s.get_response("alice", "resp_b").await.unwrap(), None);
    assert!(!s.delete_response("bob", "resp_a").await.unwrap(), "not bob's");
    assert!(s.get_response("alice", "resp_a").await.unwrap().is_some(), "still there");
    // An id is never overwritten, not even by its owner.
    let again = StoredResponse { input: "[]".into(), ..r.clone() };
    assert!(matches!(s.put_response(&again).await, Err(StoreError::Exists(_))));
    assert_eq!(s.get_response("alice", "resp_a").await.unwrap(), Some(r), "unchanged");
    assert!(s.delete_response("alice", "resp_a").await.unwrap());
    assert_eq!(s.get_response("alice", "resp_a").await.unwrap(), None);
    assert!(!s.delete_response("alice", "resp_a").await.unwrap(), "deleted once");
}

/// An expired response is missing at once, and the sweep deletes exactly those.
async fn expired_responses_are_missing_and_swept(db: &TestDb) {
    let s = &db.store;
    let day = 86_400_000;
    s.put_response(&response("resp_old", "u", now() - 1)).await.unwrap();
    s.put_response(&response("resp_new", "u", now() + day)).await.unwrap();
    assert_eq!(s.get_response("u", "resp_old").await.unwrap(), None, "expired: not read");
    assert!(!s.delete_response("u", "resp_old").await.unwrap(), "expired: not deletable either");
    assert_eq!(db.count("SELECT COUNT(*) FROM responses").await, 2, "both rows until the sweep");
    assert_eq!(s.delete_expired_responses(now()).await.unwrap(), 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM responses").await, 1);
    assert!(s.get_response("u", "resp_new").await.unwrap().is_some());
    // A day later the other one has expired too; it survives a reopen until then.
    assert!(db.reopen().get_response("u", "resp_new").await.unwrap().is_some());
    assert_eq!(s.delete_expired_responses(now() + 2 * day).await.unwrap(), 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM responses").await, 0);
}

both_engines!(only_the_owner_sees_a_response, expired_responses_are_missing_and_swept);
