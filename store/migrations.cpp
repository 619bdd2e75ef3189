#include "store/migrations.hpp"

#include <spdlog/spdlog.h>

namespace metalsync::detail {

namespace {

// 'msyn' in ASCII: marks the file as a metalsync state database.
constexpr int k_application_id = 0x6d73796e;

constexpr Migration k_migrations[] = {
    {1, "initial schema", R"sql(
CREATE TABLE revisions (
    commit_id    TEXT PRIMARY KEY,
    author_name  TEXT NOT NULL DEFAULT '',
    author_email TEXT NOT NULL DEFAULT '',
    committed_at INTEGER NOT NULL DEFAULT 0,
    seen_at      INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    errors       TEXT NOT NULL DEFAULT '[]',
    summary      TEXT NOT NULL DEFAULT '',
    seq          INTEGER NOT NULL  -- order of recording; seen_at has one-second ties
);
CREATE INDEX revisions_by_seq ON revisions (seq);
CREATE INDEX revisions_accepted ON revisions (status, seq);

CREATE TABLE desired_objects (
    revision  TEXT NOT NULL REFERENCES revisions (commit_id) ON DELETE CASCADE,
    kind      TEXT NOT NULL CHECK (kind IN ('Node', 'NodeClass', 'Policy', 'KubeObject')),
    namespace TEXT NOT NULL DEFAULT '',
    name      TEXT NOT NULL,
    spec_hash TEXT NOT NULL DEFAULT '',
    body      TEXT NOT NULL,
    PRIMARY KEY (revision, kind, namespace, name)
);

CREATE TABLE observed_nodes (
    name                   TEXT PRIMARY KEY,
    uuid                   TEXT NOT NULL,
    provision_state        TEXT NOT NULL DEFAULT '',
    target_provision_state TEXT NOT NULL DEFAULT '',
    power_state            TEXT NOT NULL DEFAULT '',
    maintenance            INTEGER NOT NULL DEFAULT 0,
    last_error             TEXT NOT NULL DEFAULT '',
    body                   TEXT NOT NULL,
    observed_at            REAL NOT NULL
);
CREATE INDEX observed_nodes_uuid ON observed_nodes (uuid);

CREATE TABLE observed_ports (
    uuid      TEXT PRIMARY KEY,
    node_uuid TEXT NOT NULL,
    mac       TEXT NOT NULL
);
CREATE INDEX observed_ports_mac ON observed_ports (mac);
CREATE INDEX observed_ports_node ON observed_ports (node_uuid);

CREATE TABLE journal (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    object_kind TEXT NOT NULL,
    object_name TEXT NOT NULL,
    verb        TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    revision    TEXT NOT NULL DEFAULT '',
    author      TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    result      TEXT NOT NULL DEFAULT '',
    attempt     INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX journal_by_object ON journal (object_name, object_kind, id);
CREATE INDEX journal_unfinished ON journal (id) WHERE state IN ('pending', 'running');

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        REAL NOT NULL,
    object_kind TEXT NOT NULL DEFAULT '',
    object_name TEXT NOT NULL DEFAULT '',
    name        TEXT NOT NULL,
    message     TEXT NOT NULL DEFAULT '',
    revision    TEXT NOT NULL DEFAULT '',
    author      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_by_object ON events (object_name, object_kind, time);
CREATE INDEX events_by_time ON events (time);

CREATE TABLE inspection (
    name         TEXT PRIMARY KEY,
    uuid         TEXT NOT NULL DEFAULT '',
    inventory    TEXT NOT NULL,
    collected_at REAL NOT NULL
);

CREATE TABLE node_status (
    name                TEXT PRIMARY KEY,
    attempts            INTEGER NOT NULL DEFAULT 0,
    spec_hash           TEXT NOT NULL DEFAULT '',
    failed              INTEGER NOT NULL DEFAULT 0,
    last_error_type     TEXT NOT NULL DEFAULT '',
    last_error          TEXT NOT NULL DEFAULT '',
    next_attempt_at     REAL,
    applied_secret_hash TEXT NOT NULL DEFAULT '',
    since               REAL
);

CREATE TABLE kube_inventory (
    revision    TEXT NOT NULL REFERENCES revisions (commit_id) ON DELETE CASCADE,
    api_version TEXT NOT NULL,
    kind        TEXT NOT NULL,
    namespace   TEXT NOT NULL DEFAULT '',
    name        TEXT NOT NULL,
    PRIMARY KEY (revision, api_version, kind, namespace, name)
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

PRAGMA application_id = 1836284270;
)sql"},
    // The rest of the planner's NodeMemory (reconcilers/node_planner.hpp), so
    // a restart neither re-runs manual clean steps nor redeploys a node that
    // Ironic forgot while it was active.
    {2, "node_status: clean steps, config drive, inspection, was-active, uuid", R"sql(
ALTER TABLE node_status ADD COLUMN clean_steps_hash  TEXT NOT NULL DEFAULT '';
ALTER TABLE node_status ADD COLUMN config_drive_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE node_status ADD COLUMN inspected         INTEGER NOT NULL DEFAULT 0;
ALTER TABLE node_status ADD COLUMN was_active        INTEGER NOT NULL DEFAULT 0;
ALTER TABLE node_status ADD COLUMN uuid              TEXT NOT NULL DEFAULT '';
)sql"},
    // The Cluster API provider's claims (reconcilers/provider/claim.hpp): one
    // machine per node and one node per machine, enforced by the database.
    {3, "provider_claims: which MetalsyncMachine holds which node", R"sql(
CREATE TABLE provider_claims (
    node              TEXT PRIMARY KEY,
    machine_uid       TEXT NOT NULL UNIQUE,
    machine_namespace TEXT NOT NULL,
    machine_name      TEXT NOT NULL,
    cluster           TEXT NOT NULL,
    phase             TEXT NOT NULL,
    updated_at        REAL NOT NULL
);
)sql"},
};

static_assert(k_application_id == 1836284270, "keep the migration's PRAGMA application_id in step");

constexpr const char* k_create_schema_migrations =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)";

std::expected<int, StoreError> read_application_id(Database& db)
{
    auto st = db.prepare("PRAGMA application_id", "reading its application id");
    if (!st) {
        return std::unexpected(st.error());
    }
    auto row = st->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    return *row ? static_cast<int>(st->integer(0)) : 0;
}

} // namespace

std::span<const Migration> migrations()
{
    return k_migrations;
}

StoreError schema_too_new(const Database& db, int version)
{
    return StoreError{"state database " + db.path().string() + " has schema version " + std::to_string(version) +
                          ", this metalsync knows up to " + std::to_string(migrations().back().version) +
                          "; upgrade metalsync or restore a backup",
                      StoreErrorKind::schema_too_new};
}

std::expected<int, StoreError> read_schema_version(Database& db)
{
    auto exists = db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'",
                             "reading its schema version");
    if (!exists) {
        return std::unexpected(exists.error());
    }
    auto row = exists->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    if (!*row || exists->integer(0) == 0) {
        return 0;
    }
    auto st = db.prepare("SELECT coalesce(max(version), 0) FROM schema_migrations", "reading its schema version");
    if (!st) {
        return std::unexpected(st.error());
    }
    row = st->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    return *row ? static_cast<int>(st->integer(0)) : 0;
}

std::expected<void, StoreError> migrate(Database& db)
{
    auto application_id = read_application_id(db);
    if (!application_id) {
        return std::unexpected(application_id.error());
    }
    if (*application_id != 0 && *application_id != k_application_id) {
        return std::unexpected(db.error(StoreErrorKind::corrupt,
                                        " belongs to another application (application_id " +
                                            std::to_string(*application_id) + "); give metalsync its own file"));
    }
    const int known = migrations().back().version;
    while (true) {
        // Read the version inside the write lock, so two processes opening a new
        // file at once apply each migration exactly once.
        auto tx = TransactionScope::begin(db, /*write=*/true);
        if (!tx) {
            return std::unexpected(tx.error());
        }
        if (auto created = db.exec(k_create_schema_migrations, "creating schema_migrations"); !created) {
            return std::unexpected(created.error());
        }
        auto version = read_schema_version(db);
        if (!version) {
            return std::unexpected(version.error());
        }
        if (*version > known) {
            return std::unexpected(schema_too_new(db, *version));
        }
        const Migration* next = nullptr;
        for (const auto& migration : migrations()) {
            if (migration.version > *version) {
                next = &migration;
                break;
            }
        }
        if (next == nullptr) {
            return tx->commit();
        }
        if (auto applied = db.exec(next->sql, "applying a schema migration"); !applied) {
            return std::unexpected(applied.error());
        }
        auto record = db.prepare("INSERT INTO schema_migrations (version, applied_at) "
                                 "VALUES (?1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                                 "recording a schema migration");
        if (!record) {
            return std::unexpected(record.error());
        }
        if (auto recorded = record->bind_all(next->version).run(); !recorded) {
            return std::unexpected(recorded.error());
        }
        if (auto committed = tx->commit(); !committed) {
            return std::unexpected(committed.error());
        }
        spdlog::info("store {}: applied schema migration {} ({})", db.path().string(), next->version,
                     next->description);
    }
}

} // namespace metalsync::detail
