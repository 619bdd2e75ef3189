// The read calls shared by Store and StoreReader.

#include <mutex>

#include "store/connection.hpp"
#include "store/observed_json.hpp"
#include "store/store.hpp"

namespace metalsync {

namespace {

using detail::Statement;

template <typename T>
using Result = std::expected<T, StoreError>;

StoreError corrupt_value(const detail::Database& db, const std::string& what)
{
    return db.error(StoreErrorKind::corrupt, " holds an unreadable " + what + "; restore a backup");
}

const std::string k_revision_columns =
    "SELECT commit_id, author_name, author_email, committed_at, seen_at, status, errors, summary FROM revisions ";

Result<RevisionRecord> read_revision(const detail::Database& db, const Statement& st)
{
    RevisionRecord record;
    record.commit_id = st.text(0);
    record.author_name = st.text(1);
    record.author_email = st.text(2);
    record.committed_at = st.integer(3);
    record.seen_at = st.integer(4);
    auto status = parse_revision_status(st.text(5));
    if (!status) {
        return std::unexpected(corrupt_value(db, "revision status '" + st.text(5) + "'"));
    }
    record.status = *status;
    auto errors = st.json(6);
    if (!errors) {
        return std::unexpected(errors.error());
    }
    if (!errors->is_array()) {
        return std::unexpected(corrupt_value(db, "revision error list"));
    }
    for (const auto& error : *errors) {
        if (!error.is_string()) {
            return std::unexpected(corrupt_value(db, "revision error list"));
        }
        record.errors.push_back(error.get<std::string>());
    }
    record.summary = st.text(7);
    return record;
}

Result<std::vector<RevisionRecord>> read_revisions(detail::Database& db, Statement& st)
{
    std::vector<RevisionRecord> records;
    while (true) {
        auto row = st.step();
        if (!row) {
            return std::unexpected(row.error());
        }
        if (!*row) {
            return records;
        }
        auto record = read_revision(db, st);
        if (!record) {
            return std::unexpected(record.error());
        }
        records.push_back(std::move(*record));
    }
}

Result<std::optional<RevisionRecord>> first_revision(detail::Database& db, Statement& st)
{
    auto records = read_revisions(db, st);
    if (!records) {
        return std::unexpected(records.error());
    }
    if (records->empty()) {
        return std::nullopt;
    }
    return std::move(records->front());
}

const std::string k_journal_columns =
    "SELECT id, object_kind, object_name, verb, params, revision, author, state, created_at, started_at, "
    "finished_at, result, attempt FROM journal ";

Result<std::vector<JournalEntry>> read_journal(detail::Database& db, Statement& st)
{
    std::vector<JournalEntry> entries;
    while (true) {
        auto row = st.step();
        if (!row) {
            return std::unexpected(row.error());
        }
        if (!*row) {
            return entries;
        }
        JournalEntry entry;
        entry.id = st.integer(0);
        entry.object_kind = st.text(1);
        entry.object_name = st.text(2);
        entry.verb = st.text(3);
        auto params = st.json(4);
        if (!params) {
            return std::unexpected(params.error());
        }
        entry.params = std::move(*params);
        entry.revision = st.text(5);
        entry.author = st.text(6);
        auto state = parse_journal_state(st.text(7));
        if (!state) {
            return std::unexpected(corrupt_value(db, "journal state '" + st.text(7) + "'"));
        }
        entry.state = *state;
        entry.created_at = st.real(8);
        entry.started_at = st.optional_real(9);
        entry.finished_at = st.optional_real(10);
        entry.result = st.text(11);
        entry.attempt = static_cast<int>(st.integer(12));
        entries.push_back(std::move(entry));
    }
}

const std::string k_node_status_columns =
    "SELECT name, attempts, spec_hash, failed, last_error_type, last_error, next_attempt_at, applied_secret_hash, "
    "since, clean_steps_hash, config_drive_hash, inspected, was_active, uuid FROM node_status ";

NodeStatus read_node_status(const Statement& st)
{
    NodeStatus status;
    status.name = st.text(0);
    status.attempts = static_cast<int>(st.integer(1));
    status.spec_hash = st.text(2);
    status.failed = st.integer(3) != 0;
    status.last_error_type = st.text(4);
    status.last_error = st.text(5);
    status.next_attempt_at = st.optional_real(6);
    status.applied_secret_hash = st.text(7);
    status.since = st.optional_real(8);
    status.clean_steps_hash = st.text(9);
    status.config_drive_hash = st.text(10);
    status.inspected = st.integer(11) != 0;
    status.was_active = st.integer(12) != 0;
    status.uuid = st.text(13);
    return status;
}

const std::string k_inspection_columns = "SELECT name, uuid, inventory, collected_at FROM inspection ";

Result<InspectionRecord> read_inspection(const Statement& st)
{
    auto inventory = st.json(2);
    if (!inventory) {
        return std::unexpected(inventory.error());
    }
    return InspectionRecord{st.text(0), st.text(1), std::move(*inventory), st.real(3)};
}

Result<std::optional<std::string>> meta_value(detail::Database& db, std::string_view key)
{
    auto st = db.prepare("SELECT value FROM meta WHERE key = ?1", "reading a meta value");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(key);
    auto row = st->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    if (!*row) {
        return std::nullopt;
    }
    return st->text(0);
}

Result<std::vector<KubeInventoryRow>> inventory_rows(detail::Database& db, std::string_view revision)
{
    auto st = db.prepare("SELECT api_version, kind, namespace, name FROM kube_inventory WHERE revision = ?1 "
                         "ORDER BY api_version, kind, namespace, name",
                         "reading the Kubernetes inventory");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(revision);
    std::vector<KubeInventoryRow> rows;
    while (true) {
        auto row = st->step();
        if (!row) {
            return std::unexpected(row.error());
        }
        if (!*row) {
            return rows;
        }
        rows.push_back(KubeInventoryRow{st->text(0), st->text(1), st->text(2), st->text(3)});
    }
}

} // namespace

Result<int> StoreReads::schema_version() const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare("SELECT coalesce(max(version), 0) FROM schema_migrations", "reading its schema version");
    if (!st) {
        return std::unexpected(st.error());
    }
    auto row = st->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    return *row ? static_cast<int>(st->integer(0)) : 0;
}

Result<std::optional<RevisionRecord>> StoreReads::last_accepted_revision() const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_revision_columns + "WHERE status = 'accepted' ORDER BY seq DESC LIMIT 1",
                         "reading the last accepted revision");
    if (!st) {
        return std::unexpected(st.error());
    }
    return first_revision(db, *st);
}

Result<std::optional<RevisionRecord>> StoreReads::last_revision() const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_revision_columns + "ORDER BY seq DESC LIMIT 1", "reading the last revision");
    if (!st) {
        return std::unexpected(st.error());
    }
    return first_revision(db, *st);
}

Result<std::optional<RevisionRecord>> StoreReads::revision(std::string_view commit_id) const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_revision_columns + "WHERE commit_id = ?1", "reading a revision");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(commit_id);
    return first_revision(db, *st);
}

Result<std::vector<RevisionRecord>> StoreReads::list_revisions(int limit) const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_revision_columns + "ORDER BY seq DESC LIMIT ?1", "listing revisions");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(limit <= 0 ? 100 : limit);
    return read_revisions(db, *st);
}

Result<std::vector<DesiredObjectRow>> StoreReads::load_desired(std::string_view revision) const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare("SELECT kind, namespace, name, spec_hash, body FROM desired_objects WHERE revision = ?1 "
                         "ORDER BY kind, namespace, name",
                         "reading desired objects");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(revision);
    std::vector<DesiredObjectRow> rows;
    while (true) {
        auto row = st->step();
        if (!row) {
            return std::unexpected(row.error());
        }
        if (!*row) {
            return rows;
        }
        auto kind = parse_desired_kind(st->text(0));
        if (!kind) {
            return std::unexpected(corrupt_value(db, "desired object kind '" + st->text(0) + "'"));
        }
        auto body = st->json(4);
        if (!body) {
            return std::unexpected(body.error());
        }
        rows.push_back(DesiredObjectRow{*kind, st->text(1), st->text(2), st->text(3), std::move(*body)});
    }
}

Result<ObservedState> StoreReads::load_observed() const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    // One read transaction: nodes and the completeness flag of the same observation.
    auto tx = detail::TransactionScope::begin(db, /*write=*/false);
    if (!tx) {
        return std::unexpected(tx.error());
    }
    ObservedState observed;
    {
        auto st = db.prepare("SELECT name, body FROM observed_nodes ORDER BY name", "reading observed nodes");
        if (!st) {
            return std::unexpected(st.error());
        }
        while (true) {
            auto row = st->step();
            if (!row) {
                return std::unexpected(row.error());
            }
            if (!*row) {
                break;
            }
            auto body = st->json(1);
            if (!body) {
                return std::unexpected(body.error());
            }
            auto node = observed_node_from_json(*body);
            if (!node) {
                return std::unexpected(corrupt_value(db, "observed node '" + st->text(0) + "' (" +
                                                             node.error().message + ")"));
            }
            observed.nodes.emplace(st->text(0), std::move(*node));
        }
    }
    auto complete = meta_value(db, "observed.complete");
    if (!complete) {
        return std::unexpected(complete.error());
    }
    observed.complete = complete->has_value() && **complete == "1";
    if (auto done = tx->commit(); !done) {
        return std::unexpected(done.error());
    }
    return observed;
}

Result<std::optional<double>> StoreReads::observed_at() const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare("SELECT CAST(value AS REAL) FROM meta WHERE key = 'observed.at'",
                         "reading the observation time");
    if (!st) {
        return std::unexpected(st.error());
    }
    auto row = st->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    if (!*row) {
        return std::nullopt;
    }
    return st->real(0);
}

Result<std::optional<JournalEntry>> StoreReads::journal_get(std::int64_t id) const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_journal_columns + "WHERE id = ?1", "reading a journal entry");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(id);
    auto entries = read_journal(db, *st);
    if (!entries) {
        return std::unexpected(entries.error());
    }
    if (entries->empty()) {
        return std::nullopt;
    }
    return std::move(entries->front());
}

Result<std::vector<JournalEntry>> StoreReads::journal_unfinished() const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_journal_columns + "WHERE state IN ('pending', 'running') ORDER BY id",
                         "reading unfinished journal entries");
    if (!st) {
        return std::unexpected(st.error());
    }
    return read_journal(db, *st);
}

Result<std::vector<JournalEntry>> StoreReads::journal_for(std::string_view object_name, int limit,
                                                          std::string_view object_kind) const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_journal_columns + "WHERE object_name = ?1 AND (?2 = '' OR object_kind = ?2) "
                                             "ORDER BY id DESC LIMIT ?3",
                         "reading an object's journal");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(object_name, object_kind, limit <= 0 ? 100 : limit);
    return read_journal(db, *st);
}

Result<std::vector<Event>> StoreReads::list_events(const EventFilter& filter) const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare("SELECT id, time, object_kind, object_name, name, message, revision, author FROM events "
                         "WHERE (?1 IS NULL OR object_kind = ?1) AND (?2 IS NULL OR object_name = ?2) "
                         "AND (?3 IS NULL OR name = ?3) AND (?4 IS NULL OR time >= ?4) "
                         "ORDER BY time DESC, id DESC LIMIT ?5",
                         "listing events");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(filter.object_kind, filter.object_name, filter.name, filter.since,
                 filter.limit <= 0 ? 100 : filter.limit);
    std::vector<Event> events;
    while (true) {
        auto row = st->step();
        if (!row) {
            return std::unexpected(row.error());
        }
        if (!*row) {
            return events;
        }
        events.push_back(Event{st->integer(0), st->real(1), st->text(2), st->text(3), st->text(4), st->text(5),
                               st->text(6), st->text(7)});
    }
}

Result<std::optional<InspectionRecord>> StoreReads::load_inspection(std::string_view name) const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_inspection_columns + "WHERE name = ?1", "reading inspection data");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(name);
    auto row = st->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    if (!*row) {
        return std::nullopt;
    }
    return read_inspection(*st);
}

Result<std::vector<InspectionRecord>> StoreReads::list_inspections() const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_inspection_columns + "ORDER BY name", "listing inspection data");
    if (!st) {
        return std::unexpected(st.error());
    }
    std::vector<InspectionRecord> records;
    while (true) {
        auto row = st->step();
        if (!row) {
            return std::unexpected(row.error());
        }
        if (!*row) {
            return records;
        }
        auto record = read_inspection(*st);
        if (!record) {
            return std::unexpected(record.error());
        }
        records.push_back(std::move(*record));
    }
}

Result<std::optional<NodeStatus>> StoreReads::get_node_status(std::string_view name) const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_node_status_columns + "WHERE name = ?1", "reading a node status");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(name);
    auto row = st->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    if (!*row) {
        return std::nullopt;
    }
    return read_node_status(*st);
}

Result<std::vector<NodeStatus>> StoreReads::list_node_statuses() const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto st = db.prepare(k_node_status_columns + "ORDER BY name", "listing node statuses");
    if (!st) {
        return std::unexpected(st.error());
    }
    std::vector<NodeStatus> statuses;
    while (true) {
        auto row = st->step();
        if (!row) {
            return std::unexpected(row.error());
        }
        if (!*row) {
            return statuses;
        }
        statuses.push_back(read_node_status(*st));
    }
}

Result<std::vector<KubeInventoryRow>> StoreReads::load_inventory(std::string_view revision) const
{
    std::lock_guard lock(m_connection->mutex);
    return inventory_rows(m_connection->db, revision);
}

Result<std::optional<KubeInventory>> StoreReads::last_inventory() const
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto tx = detail::TransactionScope::begin(db, /*write=*/false);
    if (!tx) {
        return std::unexpected(tx.error());
    }
    auto revision = meta_value(db, "kube_inventory.last");
    if (!revision) {
        return std::unexpected(revision.error());
    }
    if (!*revision) {
        return std::nullopt;
    }
    auto rows = inventory_rows(db, **revision);
    if (!rows) {
        return std::unexpected(rows.error());
    }
    if (auto done = tx->commit(); !done) {
        return std::unexpected(done.error());
    }
    return KubeInventory{std::move(**revision), std::move(*rows)};
}

Result<std::optional<std::string>> StoreReads::get_meta(std::string_view key) const
{
    std::lock_guard lock(m_connection->mutex);
    return meta_value(m_connection->db, key);
}

Result<std::vector<ClaimRow>> StoreReads::list_claims() const
{
    std::lock_guard lock(m_connection->mutex);
    auto st = m_connection->db.prepare("SELECT node, machine_namespace, machine_name, machine_uid, cluster, phase, "
                                       "updated_at FROM provider_claims ORDER BY node",
                                       "listing the provider's claims");
    if (!st) {
        return std::unexpected(st.error());
    }
    std::vector<ClaimRow> rows;
    while (true) {
        auto row = st->step();
        if (!row) {
            return std::unexpected(row.error());
        }
        if (!*row) {
            return rows;
        }
        rows.push_back({st->text(0), st->text(1), st->text(2), st->text(3), st->text(4), st->text(5), st->real(6)});
    }
}

} // namespace metalsync
