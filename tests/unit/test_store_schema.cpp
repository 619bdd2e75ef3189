// The state database as a file: migrations, WAL, permissions, locking,
// crash safety, disk full, reader connections.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "store/migrations.hpp"
#include "store/store.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;
using metalsync::test::TempDir;

namespace {

template <typename T>
T value_of(std::expected<T, StoreError> result)
{
    if (!result) {
        FAIL("store call failed: " << result.error().message);
    }
    return std::move(*result);
}

void require_ok(const std::expected<void, StoreError>& result)
{
    if (!result) {
        FAIL("store call failed: " << result.error().message);
    }
}

struct RawCloser {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using RawDb = std::unique_ptr<sqlite3, RawCloser>;

RawDb raw_open(const std::filesystem::path& path)
{
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    return RawDb(db);
}

void raw_exec(sqlite3* db, const std::string& sql)
{
    char* message = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
    const std::string text = message ? message : "";
    sqlite3_free(message);
    REQUIRE_MESSAGE(rc == SQLITE_OK, sql << ": " << text);
}

std::string raw_text(sqlite3* db, const std::string& sql)
{
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
        out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return out;
}

JournalEntry deploy_entry(const std::string& node)
{
    JournalEntry entry;
    entry.object_kind = "Node";
    entry.object_name = node;
    entry.verb = "deploy";
    entry.params = {{"target", "active"}};
    entry.revision = "3f2a1c9";
    entry.author = "alice";
    entry.created_at = 1000.5;
    return entry;
}

} // namespace

TEST_SUITE("store")
{
    TEST_CASE("store: migrations run once and reopening is idempotent")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        {
            auto store = value_of(Store::open(path));
            CHECK(value_of(store.schema_version()) == store_schema_version_known());
        }
        auto raw = raw_open(path);
        const auto count = raw_text(raw.get(), "SELECT count(*) FROM schema_migrations");
        const auto applied = raw_text(raw.get(), "SELECT group_concat(applied_at) FROM schema_migrations");
        CHECK(count == std::to_string(store_schema_version_known()));
        for (int i = 0; i < 2; ++i) {
            auto store = value_of(Store::open(path));
            CHECK(value_of(store.schema_version()) == store_schema_version_known());
        }
        CHECK(raw_text(raw.get(), "SELECT count(*) FROM schema_migrations") == count);
        CHECK(raw_text(raw.get(), "SELECT group_concat(applied_at) FROM schema_migrations") == applied);
        CHECK(raw_text(raw.get(), "PRAGMA integrity_check") == "ok");
    }

    TEST_CASE("store: a database at schema version 1 opens and migrates to the current version")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        {
            // What a metalsync of schema 1 left behind: migration 1 and a node status row.
            sqlite3* db = nullptr;
            REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) ==
                    SQLITE_OK);
            RawDb raw(db);
            REQUIRE(detail::migrations().front().version == 1);
            raw_exec(raw.get(), "PRAGMA journal_mode = WAL");
            raw_exec(raw.get(), "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
            raw_exec(raw.get(), detail::migrations().front().sql);
            raw_exec(raw.get(), "INSERT INTO schema_migrations (version, applied_at) VALUES (1, '2024-01-01T00:00:00Z')");
            raw_exec(raw.get(), "INSERT INTO node_status (name, attempts, spec_hash, applied_secret_hash, since) "
                                "VALUES ('node-01', 2, 'h1', 'hmac-sha256:abcd', 12.5)");
        }
        REQUIRE(store_schema_version_known() >= 2);
        {
            auto store = value_of(Store::open(path));
            CHECK(value_of(store.schema_version()) == store_schema_version_known());
            auto status = value_of(store.get_node_status("node-01"));
            REQUIRE(status.has_value());
            CHECK(status->attempts == 2);
            CHECK(status->spec_hash == "h1");
            CHECK(status->applied_secret_hash == "hmac-sha256:abcd");
            CHECK(status->since == std::optional<double>(12.5));
            // The columns of migration 2 read back as their defaults.
            CHECK(status->clean_steps_hash.empty());
            CHECK(status->config_drive_hash.empty());
            CHECK_FALSE(status->inspected);
            CHECK_FALSE(status->was_active);
            CHECK(status->uuid.empty());

            status->was_active = true;
            status->uuid = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
            require_ok(store.put_node_status(*status));
            // Migration 3: the provider's claims table, empty.
            CHECK(value_of(store.list_claims()).empty());
        }
        auto raw = raw_open(path);
        CHECK(raw_text(raw.get(), "SELECT group_concat(version) FROM schema_migrations") == "1,2,3");
        CHECK(raw_text(raw.get(), "SELECT applied_at FROM schema_migrations WHERE version = 1") ==
              "2024-01-01T00:00:00Z");
        CHECK(raw_text(raw.get(), "SELECT was_active || ',' || uuid FROM node_status WHERE name = 'node-01'") ==
              "1,1be26c0b-03f2-4d2e-ae87-c02d7f33c123");
        CHECK(raw_text(raw.get(), "PRAGMA integrity_check") == "ok");
    }

    TEST_CASE("store: a database from a newer metalsync is refused")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        { auto store = value_of(Store::open(path)); }
        {
            auto raw = raw_open(path);
            raw_exec(raw.get(), "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'later')");
        }
        const std::string expected = "state database " + path.string() +
                                     " has schema version 999, this metalsync knows up to " +
                                     std::to_string(store_schema_version_known()) +
                                     "; upgrade metalsync or restore a backup";
        auto store = Store::open(path);
        REQUIRE_FALSE(store.has_value());
        CHECK(store.error().message == expected);
        CHECK(store.error().kind == StoreErrorKind::schema_too_new);
        auto reader = StoreReader::open(path);
        REQUIRE_FALSE(reader.has_value());
        CHECK(reader.error().message == expected);
    }

    TEST_CASE("store: WAL mode, foreign keys and a private file")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        auto store = value_of(Store::open(path));
        require_ok(store.set_meta("instance", "a"));

        auto raw = raw_open(path);
        CHECK(raw_text(raw.get(), "PRAGMA journal_mode") == "wal");

        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        const auto wal = path.string() + "-wal";
        REQUIRE(::stat(wal.c_str(), &st) == 0);
        CHECK((st.st_mode & 07077) == 0);

        // desired rows reference their revision: the foreign key is enforced.
        auto saved = store.save_desired("unknown-revision", {DesiredObjectRow{DesiredKind::node, "", "n", "h", {}}});
        CHECK_FALSE(saved.has_value());
    }

    TEST_CASE("store: the parent directory must exist")
    {
        TempDir dir("store");
        auto store = Store::open(dir / "missing" / "state.db");
        REQUIRE_FALSE(store.has_value());
        CHECK(store.error().message.find("does not exist") != std::string::npos);
    }

    TEST_CASE("store: a file that is not a database is reported, not overwritten")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        metalsync::test::write_file(path, std::string(8192, 'x'));
        auto store = Store::open(path);
        REQUIRE_FALSE(store.has_value());
        CHECK(store.error().kind == StoreErrorKind::corrupt);
        CHECK(store.error().message.find(path.string()) != std::string::npos);
        CHECK(metalsync::test::read_file(path) == std::string(8192, 'x'));
    }

    TEST_CASE("store: a second writer on a locked database gets a clear error")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        StoreOptions options;
        options.busy_timeout = std::chrono::milliseconds(200);
        auto store = value_of(Store::open(path, options));

        auto other = raw_open(path);
        raw_exec(other.get(), "BEGIN IMMEDIATE");
        raw_exec(other.get(), "INSERT INTO meta (key, value) VALUES ('held', 'by other')");

        SUBCASE("a write of the open store")
        {
            auto written = store.set_meta("instance", "a");
            REQUIRE_FALSE(written.has_value());
            CHECK(written.error().kind == StoreErrorKind::locked);
            CHECK(written.error().message.find("locked by another writer") != std::string::npos);
            CHECK(written.error().message.find(path.string()) != std::string::npos);
            auto tx = store.transaction();
            REQUIRE_FALSE(tx.has_value());
            CHECK(tx.error().kind == StoreErrorKind::locked);
        }
        SUBCASE("opening a second Store")
        {
            auto second = Store::open(path, options);
            REQUIRE_FALSE(second.has_value());
            CHECK(second.error().kind == StoreErrorKind::locked);
            CHECK(second.error().message.find("locked by another writer") != std::string::npos);
        }
        SUBCASE("reads still work and see only committed data")
        {
            CHECK_FALSE(value_of(store.get_meta("held")).has_value());
        }
        raw_exec(other.get(), "ROLLBACK");
        require_ok(store.set_meta("instance", "b"));
    }

    TEST_CASE("store: a running journal entry survives kill -9")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        { auto store = value_of(Store::open(path)); }

        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // The "daemon": journal an action, start it, and die before finishing it.
            auto store = Store::open(path);
            if (!store) {
                ::_exit(2);
            }
            auto id = store->journal_add(deploy_entry("node-01"));
            if (!id || !store->journal_mark_running(*id, 1001.0)) {
                ::_exit(3);
            }
            auto done = store->journal_add(deploy_entry("node-02"));
            if (!done || !store->journal_finish(*done, JournalState::done, "ok", 1002.0)) {
                ::_exit(4);
            }
            ::kill(::getpid(), SIGKILL);
            ::_exit(5);
        }
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        REQUIRE(WIFSIGNALED(status));
        CHECK(WTERMSIG(status) == SIGKILL);

        auto store = value_of(Store::open(path));
        auto unfinished = value_of(store.journal_unfinished());
        REQUIRE(unfinished.size() == 1);
        CHECK(unfinished[0].object_name == "node-01");
        CHECK(unfinished[0].state == JournalState::running);
        CHECK(unfinished[0].started_at == 1001.0);
        CHECK(unfinished[0].params == nlohmann::json{{"target", "active"}});
        CHECK(unfinished[0].attempt == 1);

        // The restarted daemon re-runs it: a second attempt, then done.
        require_ok(store.journal_mark_running(unfinished[0].id, 2000.0));
        CHECK(value_of(store.journal_get(unfinished[0].id))->attempt == 2);
        require_ok(store.journal_finish(unfinished[0].id, JournalState::done, "active", 2001.0));
        CHECK(value_of(store.journal_unfinished()).empty());
    }

    TEST_CASE("store: a full disk is an error, never corruption")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        StoreOptions options;
        options.max_size_bytes = 256 * 1024;
        {
            auto store = value_of(Store::open(path, options));
            RevisionRecord revision;
            revision.commit_id = "c1";
            require_ok(store.record_revision(revision));
            require_ok(store.set_meta("before", "full"));

            SUBCASE("single writes")
            {
                std::optional<StoreError> failure;
                for (int i = 0; i < 1000 && !failure; ++i) {
                    Event event;
                    event.time = double(i);
                    event.name = "test.fill";
                    event.message = std::string(8000, char('a' + i % 26));
                    auto added = store.add_event(event);
                    if (!added) {
                        failure = added.error();
                    }
                }
                REQUIRE(failure.has_value());
                CHECK(failure->kind == StoreErrorKind::disk_full);
                CHECK(failure->message.find("disk is full") != std::string::npos);
                CHECK(failure->message.find(path.string()) != std::string::npos);
            }
            SUBCASE("a transaction fails whole")
            {
                std::vector<DesiredObjectRow> rows;
                for (int i = 0; i < 100; ++i) {
                    rows.push_back(DesiredObjectRow{DesiredKind::node, "", "node-" + std::to_string(i), "h",
                                                    {{"pad", std::string(8000, 'x')}}});
                }
                auto saved = store.save_desired("c1", rows);
                REQUIRE_FALSE(saved.has_value());
                CHECK(saved.error().kind == StoreErrorKind::disk_full);
                CHECK(value_of(store.load_desired("c1")).empty());
            }
            // Still usable for reads and small writes after the failure.
            CHECK(value_of(store.get_meta("before")) == std::optional<std::string>("full"));
            CHECK(value_of(store.prune_events(1e12)) >= 0);
            require_ok(store.set_meta("after", "freed"));
        }
        auto store = value_of(Store::open(path));
        CHECK(value_of(store.get_meta("after")) == std::optional<std::string>("freed"));
        auto raw = raw_open(path);
        CHECK(raw_text(raw.get(), "PRAGMA integrity_check") == "ok");
    }

    TEST_CASE("store: a reader connection sees what the writer committed")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        auto store = value_of(Store::open(path));
        auto reader = value_of(StoreReader::open(path));

        CHECK_FALSE(value_of(reader.last_revision()).has_value());
        RevisionRecord revision;
        revision.commit_id = "abc";
        require_ok(store.record_revision(revision));
        auto seen = value_of(reader.last_revision());
        REQUIRE(seen.has_value());
        CHECK(seen->commit_id == "abc");

        {
            auto tx = value_of(store.transaction());
            require_ok(store.set_meta("k", "uncommitted"));
            CHECK_FALSE(value_of(reader.get_meta("k")).has_value());
            require_ok(tx.commit());
        }
        CHECK(value_of(reader.get_meta("k")) == std::optional<std::string>("uncommitted"));
        {
            auto tx = value_of(store.transaction());
            require_ok(store.set_meta("k", "rolled back"));
        }
        CHECK(value_of(reader.get_meta("k")) == std::optional<std::string>("uncommitted"));
        CHECK(value_of(store.get_meta("k")) == std::optional<std::string>("uncommitted"));
        CHECK(value_of(reader.schema_version()) == store_schema_version_known());
    }

    TEST_CASE("store: a reader refuses a missing or unmigrated file")
    {
        TempDir dir("store");
        auto missing = StoreReader::open(dir / "none.db");
        REQUIRE_FALSE(missing.has_value());
        CHECK(missing.error().message.find("does not exist") != std::string::npos);

        const auto path = dir / "other.db";
        {
            sqlite3* db = nullptr;
            REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) ==
                    SQLITE_OK);
            RawDb raw(db);
            raw_exec(db, "CREATE TABLE t (x)");
        }
        auto unmigrated = StoreReader::open(path);
        REQUIRE_FALSE(unmigrated.has_value());
        CHECK(unmigrated.error().message.find("schema version 0") != std::string::npos);
    }
}
