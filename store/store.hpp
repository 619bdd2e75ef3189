#pragma once

// metalsync's state database: one SQLite file in WAL mode.
//
// - `Store` is the one writer connection, used by the daemon loop thread.
// - `StoreReader` is a read-only connection (SQLITE_OPEN_READONLY) on the same
//   file for the control-socket threads; it sees what the writer committed.
//   A reader serialises its own calls, so several threads may share one.
// Both have every read call (StoreReads). No SQLite header leaks from here.
//
// Credentials never enter the store: desired Node bodies name a credentials
// file, node_status keeps only an HMAC computed by the caller, and the
// observed driver_info/instance_info are stored with secret-looking values
// masked as Ironic masks them ("******").

#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reconcilers/observed_state.hpp"
#include "store/records.hpp"
#include "store/store_error.hpp"

namespace metalsync {

namespace detail {
struct Connection;
}

struct StoreOptions {
    // How long a call waits for another connection's lock before it fails
    // with StoreErrorKind::locked.
    std::chrono::milliseconds busy_timeout{5000};
    // Cap on the database file size; beyond it writes fail as if the disk
    // were full (StoreErrorKind::disk_full). None: only the disk limits it.
    std::optional<std::int64_t> max_size_bytes;
    // desired_objects and kube_inventory keep the rows of this many newest
    // accepted revisions (plus the revision being written).
    int keep_revisions = 10;
};

// The schema version this build creates and understands.
[[nodiscard]] int store_schema_version_known();

class StoreReads {
public:
    [[nodiscard]] const std::filesystem::path& path() const;
    [[nodiscard]] std::expected<int, StoreError> schema_version() const;

    // Revisions, newest recorded first.
    [[nodiscard]] std::expected<std::optional<RevisionRecord>, StoreError> last_accepted_revision() const;
    [[nodiscard]] std::expected<std::optional<RevisionRecord>, StoreError> last_revision() const;
    [[nodiscard]] std::expected<std::optional<RevisionRecord>, StoreError> revision(std::string_view commit_id) const;
    [[nodiscard]] std::expected<std::vector<RevisionRecord>, StoreError> list_revisions(int limit) const;

    // Ordered by kind, namespace, name. Empty when the revision's rows were pruned or never saved.
    [[nodiscard]] std::expected<std::vector<DesiredObjectRow>, StoreError> load_desired(std::string_view revision) const;

    // The last observation saved by replace_observed (empty and incomplete if none).
    [[nodiscard]] std::expected<ObservedState, StoreError> load_observed() const;
    [[nodiscard]] std::expected<std::optional<double>, StoreError> observed_at() const;

    [[nodiscard]] std::expected<std::optional<JournalEntry>, StoreError> journal_get(std::int64_t id) const;
    // Entries still pending or running, oldest first: what a restart must look at.
    [[nodiscard]] std::expected<std::vector<JournalEntry>, StoreError> journal_unfinished() const;
    // Newest first; an empty object_kind matches every kind.
    [[nodiscard]] std::expected<std::vector<JournalEntry>, StoreError>
    journal_for(std::string_view object_name, int limit, std::string_view object_kind = {}) const;

    // Newest first.
    [[nodiscard]] std::expected<std::vector<Event>, StoreError> list_events(const EventFilter& filter = {}) const;

    [[nodiscard]] std::expected<std::optional<InspectionRecord>, StoreError> load_inspection(std::string_view name) const;
    // Every node's, ordered by name (the daemon loads them once at start).
    [[nodiscard]] std::expected<std::vector<InspectionRecord>, StoreError> list_inspections() const;

    [[nodiscard]] std::expected<std::optional<NodeStatus>, StoreError> get_node_status(std::string_view name) const;
    [[nodiscard]] std::expected<std::vector<NodeStatus>, StoreError> list_node_statuses() const;

    [[nodiscard]] std::expected<std::vector<KubeInventoryRow>, StoreError> load_inventory(std::string_view revision) const;
    // The inventory saved last, whatever its revision.
    [[nodiscard]] std::expected<std::optional<KubeInventory>, StoreError> last_inventory() const;

    [[nodiscard]] std::expected<std::optional<std::string>, StoreError> get_meta(std::string_view key) const;
    // The provider's claims, by node name.
    [[nodiscard]] std::expected<std::vector<ClaimRow>, StoreError> list_claims() const;

protected:
    explicit StoreReads(std::unique_ptr<detail::Connection> connection);
    ~StoreReads();
    StoreReads(StoreReads&&) noexcept;
    StoreReads& operator=(StoreReads&&) noexcept;

    std::unique_ptr<detail::Connection> m_connection;
};

class StoreReader : public StoreReads {
public:
    // Fails when the file does not exist or has not been migrated by a Store
    // of this version (the writer opens first).
    [[nodiscard]] static std::expected<StoreReader, StoreError> open(const std::filesystem::path& path,
                                                                     const StoreOptions& options = {});

private:
    using StoreReads::StoreReads;
};

class Store;

// BEGIN IMMEDIATE ... COMMIT; rolled back when destroyed uncommitted. Store
// calls made while it is open join it (as savepoints), so several writes
// commit or vanish together. Only for the thread that owns the Store.
class Transaction {
public:
    Transaction(Transaction&& other) noexcept;
    Transaction& operator=(Transaction&&) = delete;
    Transaction(const Transaction&) = delete;
    ~Transaction();

    [[nodiscard]] std::expected<void, StoreError> commit();
    void rollback();

private:
    friend class Store;
    Transaction(detail::Connection* connection, std::string savepoint);

    detail::Connection* m_connection;
    std::string m_savepoint;  // empty for the outermost transaction
    bool m_open = true;
};

class Store : public StoreReads {
public:
    // `path`'s directory must exist. Creates the file (mode 0600) when absent,
    // turns on WAL, foreign keys, synchronous=FULL and busy_timeout, and
    // applies pending migrations, one transaction each. Refuses a database
    // written by a newer metalsync, and reports a lock held by another writer.
    [[nodiscard]] static std::expected<Store, StoreError> open(const std::filesystem::path& path,
                                                               const StoreOptions& options = {});

    [[nodiscard]] std::expected<Transaction, StoreError> transaction();

    // Inserts, or updates the record of a commit seen again (it becomes the newest).
    [[nodiscard]] std::expected<void, StoreError> record_revision(const RevisionRecord& record);

    // Replaces the revision's rows (record_revision first: rows reference it),
    // then prunes rows of revisions older than the newest keep_revisions accepted ones.
    [[nodiscard]] std::expected<void, StoreError> save_desired(std::string_view revision,
                                                               const std::vector<DesiredObjectRow>& rows);

    // One whole observation, replacing the previous one in one transaction.
    [[nodiscard]] std::expected<void, StoreError> replace_observed(const ObservedState& observed, double now);

    [[nodiscard]] std::expected<std::int64_t, StoreError> journal_add(const JournalEntry& entry);
    // pending -> running; running -> running counts a new attempt (re-run after a crash).
    [[nodiscard]] std::expected<void, StoreError> journal_mark_running(std::int64_t id, double now);
    // pending|running -> done|failed|cancelled.
    [[nodiscard]] std::expected<void, StoreError> journal_finish(std::int64_t id, JournalState state,
                                                                 std::string_view result, double now);
    [[nodiscard]] std::expected<void, StoreError> journal_cancel(std::int64_t id, std::string_view why, double now);
    // Deletes finished entries that finished before `before`; returns how many.
    [[nodiscard]] std::expected<std::int64_t, StoreError> prune_journal(double before);

    [[nodiscard]] std::expected<std::int64_t, StoreError> add_event(const Event& event);
    [[nodiscard]] std::expected<std::int64_t, StoreError> prune_events(double before);

    [[nodiscard]] std::expected<void, StoreError> save_inspection(const InspectionRecord& record);
    // A new inspection was requested (or the node enrolled again): the old result no longer holds.
    [[nodiscard]] std::expected<void, StoreError> delete_inspection(std::string_view name);

    [[nodiscard]] std::expected<void, StoreError> put_node_status(const NodeStatus& status);
    [[nodiscard]] std::expected<void, StoreError> delete_node_status(std::string_view name);

    // Replaces the revision's inventory and makes it the last one (revision recorded first).
    [[nodiscard]] std::expected<void, StoreError> save_inventory(std::string_view revision,
                                                                 const std::vector<KubeInventoryRow>& rows);

    [[nodiscard]] std::expected<void, StoreError> set_meta(std::string_view key, std::string_view value);
    // Records the claim of row.machine_uid (replacing its earlier one). The
    // database refuses a node already claimed by another machine: the error
    // names the node and that machine, and nothing changes.
    [[nodiscard]] std::expected<void, StoreError> put_claim(const ClaimRow& row);
    // false when the machine had no claim.
    [[nodiscard]] std::expected<bool, StoreError> delete_claim(std::string_view machine_uid);
    [[nodiscard]] std::expected<void, StoreError> delete_meta(std::string_view key);

private:
    using StoreReads::StoreReads;
};

} // namespace metalsync
