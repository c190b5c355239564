//! Conversations on both engines: ownership, branches, pagination, search, cascades,
//! retention and durability.

use sluice_store::{
    ConversationCursor, Engine, MessageUpdate, NewMessage, Page, Store, conversations::Conversation,
};

use crate::db::{TestDb, both_engines};

fn msg(role: &str, content: &str, parent: Option<&str>) -> NewMessage {
    NewMessage {
        role: role.to_owned(),
        content: content.to_owned(),
        parent_id: parent.map(str::to_owned),
        ..Default::default()
    }
}

async fn all_pages(s: &Store, user: &str, limit: u32) -> Vec<Conversation> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let (page, next) = s.list_conversations(user, &Page { before, limit }).await.unwrap();
        assert!(page.len() <= limit as usize);
        out.extend(page);
        match next {
            Some(c) => before = Some(c.to_string().parse::<ConversationCursor>().unwrap()),
            None => return out,
        }
    }
}

/// User B sees nothing of user A's and changes nothing: every call answers "missing".
async fn another_users_conversation_is_missing(db: &TestDb) {
    let s = &db.store;
    let c = s.create_conversation("alice", "Secret plans", "m").await.unwrap();
    assert_eq!(s.last_message_id("alice", &c.id).await.unwrap(), Some(None), "empty, but hers");
    let m =
        s.append_message("alice", &c.id, msg("user", "launch the zeppelin", None)).await.unwrap().unwrap();
    assert_eq!(s.last_message_id("alice", &c.id).await.unwrap(), Some(Some(m.id.clone())));

    assert_eq!(s.get_conversation("bob", &c.id).await.unwrap(), None);
    assert_eq!(s.last_message_id("bob", &c.id).await.unwrap(), None);
    assert_eq!(s.export_conversation("bob", &c.id).await.unwrap(), None);
    assert!(s.list_conversations("bob", &Page { before: None, limit: 50 }).await.unwrap().0.is_empty());
    assert!(!s.rename_conversation("bob", &c.id, "mine").await.unwrap());
    assert!(!s.delete_conversation("bob", &c.id).await.unwrap());
    assert_eq!(s.append_message("bob", &c.id, msg("user", "hi", None)).await.unwrap(), None);
    assert_eq!(s.append_message("bob", &c.id, msg("user", "hi", Some(&m.id))).await.unwrap(), None);
    let edit = MessageUpdate { content: Some("hijacked".to_owned()), ..Default::default() };
    assert_eq!(s.update_message("bob", &m.id, edit).await.unwrap(), None);
    assert!(s.search_messages("bob", "zeppelin", 10).await.unwrap().is_empty());
    // Bob's own conversation cannot adopt Alice's message as a parent either.
    let b = s.create_conversation("bob", "Mine", "m").await.unwrap();
    assert_eq!(s.append_message("bob", &b.id, msg("user", "hi", Some(&m.id))).await.unwrap(), None);

    let kept = s.get_conversation("alice", &c.id).await.unwrap().unwrap();
    assert_eq!(
        kept.conversation,
        Conversation { updated_at: m.created_at, ..c.clone() },
        "untouched since the append"
    );
    assert_eq!(kept.messages, [m]);
    let export = serde_json::to_value(s.export_conversation("alice", &c.id).await.unwrap().unwrap()).unwrap();
    assert_eq!(export["format"], "sluice.conversation.v1");
    assert_eq!(export["messages"][0]["content"], "launch the zeppelin");
}

/// An edited and resent message is a sibling: both children of one parent come back.
async fn branches_keep_both_children(db: &TestDb) {
    let s = &db.store;
    let c = s.create_conversation("u", "Branches", "m").await.unwrap();
    let q = s.append_message("u", &c.id, msg("user", "first question", None)).await.unwrap().unwrap();
    let a = s.append_message("u", &c.id, msg("assistant", "", Some(&q.id))).await.unwrap().unwrap();
    let done = MessageUpdate {
        content: Some("first answer".to_owned()),
        model: Some("m".to_owned()),
        completion_tokens: Some(3),
        ttft_ms: Some(40),
        duration_ms: Some(90),
        finish_reason: Some("stop".to_owned()),
        ..Default::default()
    };
    let a = s.update_message("u", &a.id, done).await.unwrap().unwrap();
    assert_eq!(
        (a.content.as_str(), a.completion_tokens, a.finish_reason.as_deref()),
        ("first answer", Some(3), Some("stop"))
    );
    let v1 = s.append_message("u", &c.id, msg("user", "follow up", Some(&a.id))).await.unwrap().unwrap();
    let v2 =
        s.append_message("u", &c.id, msg("user", "follow up, edited", Some(&a.id))).await.unwrap().unwrap();

    let got = s.get_conversation("u", &c.id).await.unwrap().unwrap();
    let shape: Vec<_> = got.messages.iter().map(|m| (m.id.as_str(), m.parent_id.as_deref())).collect();
    assert_eq!(
        shape,
        [
            (q.id.as_str(), None),
            (a.id.as_str(), Some(q.id.as_str())),
            (v1.id.as_str(), Some(a.id.as_str())),
            (v2.id.as_str(), Some(a.id.as_str()))
        ]
    );
    assert_eq!(got.messages[1], a);
    // The updated text is what search now finds.
    assert_eq!(s.search_messages("u", "answer", 10).await.unwrap().len(), 1);
    let other = s.create_conversation("u", "Other", "m").await.unwrap();
    assert_eq!(
        s.append_message("u", &other.id, msg("user", "x", Some(&q.id))).await.unwrap(),
        None,
        "parent from another conversation"
    );
}

/// Newest `updated_at` first, ties by id, every conversation exactly once across pages;
/// a new message moves its conversation to the top.
async fn pages_follow_updated_at(db: &TestDb) {
    let s = &db.store;
    let mut made = Vec::new();
    for (i, at) in [100, 200, 200, 200, 300, 400, 500].into_iter().enumerate() {
        let c = s.create_conversation("u", &format!("c{i}"), "m").await.unwrap();
        db.exec(&format!("UPDATE conversations SET updated_at = {at} WHERE id = '{}'", c.id)).await;
        made.push(Conversation { updated_at: at, ..c });
    }
    s.create_conversation("someone else", "x", "m").await.unwrap();
    let mut expected = made.clone();
    expected.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
    for limit in [1, 2, 3, 7, 50] {
        assert_eq!(all_pages(s, "u", limit).await, expected, "limit {limit}");
    }
    let (first, next) = s.list_conversations("u", &Page { before: None, limit: 7 }).await.unwrap();
    assert_eq!((first.len(), next), (7, None));

    s.append_message("u", &made[0].id, msg("user", "bump", None)).await.unwrap().unwrap();
    let (top, _) = s.list_conversations("u", &Page { before: None, limit: 1 }).await.unwrap();
    assert_eq!(top[0].id, made[0].id);
    assert!(top[0].updated_at > 500);
    assert!("12".parse::<ConversationCursor>().is_err() && "x:1".parse::<ConversationCursor>().is_err());
}

/// Search finds a word only in the user's own messages and treats any text as text.
async fn search_is_per_user_and_safe(db: &TestDb) {
    let s = &db.store;
    let mine = s.create_conversation("ann", "Foxes", "m").await.unwrap();
    s.append_message("ann", &mine.id, msg("user", "the quick brown fox jumps over the lazy dog", None))
        .await
        .unwrap()
        .unwrap();
    s.append_message("ann", &mine.id, msg("assistant", "dogs are not amused", None)).await.unwrap().unwrap();
    let theirs = s.create_conversation("ben", "Silver", "m").await.unwrap();
    s.append_message("ben", &theirs.id, msg("user", "quick silver fox", None)).await.unwrap().unwrap();

    let hits = s.search_messages("ann", "quick", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!((hits[0].conversation_id.as_str(), hits[0].title.as_str()), (mine.id.as_str(), "Foxes"));
    assert!(hits[0].snippet.contains("**quick**"), "{}", hits[0].snippet);
    assert_eq!(
        s.search_messages("ann", "QUICK Fox", 10).await.unwrap().len(),
        1,
        "case-insensitive, all words"
    );
    assert!(s.search_messages("ann", "silver", 10).await.unwrap().is_empty());
    assert_eq!(s.search_messages("ben", "fox", 10).await.unwrap().len(), 1);
    let ben_hex: String = "ben".bytes().map(|b| format!("{b:02X}")).collect();
    for hostile in [
        "\"",
        "\"quick",
        "*",
        "quick*",
        "-",
        "-quick",
        "OR",
        "quick OR",
        "OR quick",
        "AND",
        "NOT",
        "NEAR(quick fox)",
        "content:quick",
        "owner:x",
        &format!("owner:{ben_hex}"),
        "')); DROP TABLE messages; --",
        "^quick",
        "{content}",
        "",
        "   ",
        "\u{0}",
        "ünïcödé 🦊",
    ] {
        let hits = s.search_messages("ann", hostile, 10).await.unwrap_or_else(|e| panic!("{hostile:?}: {e}"));
        assert!(hits.iter().all(|h| h.conversation_id == mine.id), "{hostile:?}: {hits:?}");
    }
    assert_eq!(s.search_messages("ann", "\"quick\"", 10).await.unwrap().len(), 1);
}

/// Deleting a conversation removes its messages and their search entries; retention
/// removes only conversations not updated since the cut-off.
async fn deletes_cascade_and_retention_keeps_recent(db: &TestDb) {
    let s = &db.store;
    let old = s.create_conversation("u", "old", "m").await.unwrap();
    s.append_message("u", &old.id, msg("user", "ancient walrus", None)).await.unwrap().unwrap();
    let gone = s.create_conversation("u", "gone", "m").await.unwrap();
    s.append_message("u", &gone.id, msg("user", "doomed walrus", None)).await.unwrap().unwrap();
    let new = s.create_conversation("u", "new", "m").await.unwrap();
    s.append_message("u", &new.id, msg("user", "fresh walrus", None)).await.unwrap().unwrap();
    assert_eq!(s.search_messages("u", "walrus", 10).await.unwrap().len(), 3);

    assert!(s.delete_conversation("u", &gone.id).await.unwrap());
    assert!(!s.delete_conversation("u", &gone.id).await.unwrap());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM messages WHERE conversation_id = '{}'", gone.id)).await,
        0
    );
    assert_eq!(s.search_messages("u", "doomed", 10).await.unwrap(), []);
    if db.store.engine() == Engine::Sqlite {
        assert_eq!(db.count("SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH 'doomed'").await, 0);
        db.exec("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')").await;
    }

    db.exec(&format!("UPDATE conversations SET updated_at = 1000 WHERE id = '{}'", old.id)).await;
    assert_eq!(s.delete_conversations_before(1001).await.unwrap(), 1);
    assert_eq!(s.get_conversation("u", &old.id).await.unwrap(), None);
    assert_eq!(db.count("SELECT COUNT(*) FROM messages").await, 1);
    let hits = s.search_messages("u", "walrus", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].conversation_id, new.id);
    if db.store.engine() == Engine::Sqlite {
        assert_eq!(db.count("SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH 'walrus'").await, 1);
        db.exec("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')").await;
    }
}

/// What `append_message` acknowledged is there for the next process; SQLite syncs
/// every commit (`synchronous = FULL`, 2).
async fn acknowledged_means_stored(db: &TestDb) {
    let c = db.store.create_conversation("u", "t", "m").await.unwrap();
    let m = db.store.append_message("u", &c.id, msg("user", "keep me", None)).await.unwrap().unwrap();
    let fresh = db.reopen();
    assert_eq!(fresh.get_conversation("u", &c.id).await.unwrap().unwrap().messages, [m]);
    if db.store.engine() == Engine::Sqlite {
        assert_eq!(db.count("PRAGMA synchronous").await, 2);
        assert_eq!(db.count("PRAGMA foreign_keys").await, 1);
    }
}

both_engines!(
    another_users_conversation_is_missing,
    branches_keep_both_children,
    pages_follow_updated_at,
    search_is_per_user_and_safe,
    deletes_cascade_and_retention_keeps_recent,
    acknowledged_means_stored,
);
