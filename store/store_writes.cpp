// The write calls of the single writer connection.

#include <algorithm>
#include <array>
#include <cctype>
#include <mutex>

#include "store/connection.hpp"
#include "store/observed_json.hpp"
#include "store/store.hpp"

namespace metalsync {

namespace {

template <typename T>
using Result = std::expected<T, StoreError>;

constexpr const char* k_masked = "******";

// Ironic masks these in API replies already; masking again here keeps the
// rule "no credential in SQLite" even if a reply ever carried one in clear.
bool is_secret_key(std::string key)
{
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
    constexpr std::array<std::string_view, 6> k_words = {"password", "passwd", "secret", "token", "passphrase",
                                                         "configdrive"};
    for (auto word : k_words) {
        if (key.find(word) != std::string::npos) {
            return true;
        }
    }
    return key == "key" || key.ends_with("_key");
}

void mask_secrets(nlohmann::json& object)
{
    if (!object.is_object()) {
        return;
    }
    for (auto& [key, value] : object.items()) {
        if (is_secret_key(key) && !value.is_null() && value != k_masked) {
            value = k_masked;
        }
    }
}

// Runs `body` in a transaction of its own, or a savepoint inside the caller's.
template <typename Body>
auto in_transaction(detail::Database& db, Body&& body) -> decltype(body())
{
    auto tx = detail::TransactionScope::begin(db, /*write=*/true);
    if (!tx) {
        return std::unexpected(tx.error());
    }
    auto result = body();
    if (!result) {
        return result;
    }
    if (auto committed = tx->commit(); !committed) {
        return std::unexpected(committed.error());
    }
    return result;
}

Result<void> run(detail::Database& db, const std::string& sql, const char* doing, const auto&... args)
{
    auto st = db.prepare(sql, doing);
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(args...);
    return st->run();
}

Result<void> prune_by_revision(detail::Database& db, const char* table, std::string_view keep_revision,
                               std::string_view also_keep, int keep_revisions)
{
    // `table` is one of two literals of this file, never input.
    return run(db,
               std::string("DELETE FROM ") + table +
                   " WHERE revision <> ?1 AND revision <> ?2 AND revision NOT IN "
                   "(SELECT commit_id FROM revisions WHERE status = 'accepted' ORDER BY seq DESC LIMIT ?3)",
               "pruning old revisions", keep_revision, also_keep, std::max(1, keep_revisions));
}

Result<std::string> journal_state_of(detail::Database& db, std::int64_t id)
{
    auto st = db.prepare("SELECT state FROM journal WHERE id = ?1", "reading a journal entry");
    if (!st) {
        return std::unexpected(st.error());
    }
    st->bind_all(id);
    auto row = st->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    if (!*row) {
        return std::unexpected(db.error(StoreErrorKind::not_found,
                                        " has no journal entry " + std::to_string(id)));
    }
    return st->text(0);
}

} // namespace

Result<void> Store::record_revision(const RevisionRecord& record)
{
    std::lock_guard lock(m_connection->mutex);
    nlohmann::json errors = nlohmann::json::array();
    for (const auto& error : record.errors) {
        errors.push_back(error);
    }
    return run(m_connection->db,
               "INSERT INTO revisions (commit_id, author_name, author_email, committed_at, seen_at, status, errors, "
               "summary, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
               "(SELECT coalesce(max(seq), 0) + 1 FROM revisions)) "
               "ON CONFLICT (commit_id) DO UPDATE SET author_name = excluded.author_name, "
               "author_email = excluded.author_email, committed_at = excluded.committed_at, "
               "seen_at = excluded.seen_at, status = excluded.status, errors = excluded.errors, "
               "summary = excluded.summary, seq = excluded.seq",
               "recording a revision", record.commit_id, record.author_name, record.author_email,
               record.committed_at, record.seen_at, to_string(record.status), errors, record.summary);
}

Result<void> Store::save_desired(std::string_view revision, const std::vector<DesiredObjectRow>& rows)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    return in_transaction(db, [&]() -> Result<void> {
        if (auto ok = run(db, "DELETE FROM desired_objects WHERE revision = ?1", "replacing desired objects",
                          revision);
            !ok) {
            return ok;
        }
        for (const auto& row : rows) {
            if (auto ok = run(db,
                              "INSERT INTO desired_objects (revision, kind, namespace, name, spec_hash, body) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              "saving desired objects", revision, to_string(row.kind), row.namespace_, row.name,
                              row.spec_hash, row.body);
                !ok) {
                return ok;
            }
        }
        return prune_by_revision(db, "desired_objects", revision, revision, m_connection->options.keep_revisions);
    });
}

Result<void> Store::replace_observed(const ObservedState& observed, double now)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    return in_transaction(db, [&]() -> Result<void> {
        if (auto ok = run(db, "DELETE FROM observed_ports", "replacing the observed state"); !ok) {
            return ok;
        }
        if (auto ok = run(db, "DELETE FROM observed_nodes", "replacing the observed state"); !ok) {
            return ok;
        }
        for (const auto& [name, node] : observed.nodes) {
            auto body = to_json(node);
            mask_secrets(body["driver_info"]);
            mask_secrets(body["instance_info"]);
            if (auto ok = run(db,
                              "INSERT INTO observed_nodes (name, uuid, provision_state, target_provision_state, "
                              "power_state, maintenance, last_error, body, observed_at) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                              "saving observed nodes", name, node.uuid, node.provision_state,
                              node.target_provision_state, node.power_state, node.maintenance, node.last_error,
                              body, now);
                !ok) {
                return ok;
            }
            for (const auto& port : node.ports) {
                if (auto ok = run(db,
                                  "INSERT INTO observed_ports (uuid, node_uuid, mac) VALUES (?1, ?2, ?3) "
                                  "ON CONFLICT (uuid) DO UPDATE SET node_uuid = excluded.node_uuid, "
                                  "mac = excluded.mac",
                                  "saving observed ports", port.uuid, port.node_uuid, port.mac);
                    !ok) {
                    return ok;
                }
            }
        }
        const std::string meta_sql =
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
        if (auto ok = run(db, meta_sql, "saving the observed state", "observed.complete",
                          observed.complete ? "1" : "0");
            !ok) {
            return ok;
        }
        char at[64];
        std::snprintf(at, sizeof at, "%.17g", now);
        return run(db, meta_sql, "saving the observed state", "observed.at", at);
    });
}

Result<std::int64_t> Store::journal_add(const JournalEntry& entry)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    if (entry.state != JournalState::pending && entry.state != JournalState::running) {
        return std::unexpected(db.error(StoreErrorKind::invalid_transition,
                                        ": a new journal entry must be pending or running, not " +
                                            std::string(to_string(entry.state))));
    }
    auto ok = run(db,
                  "INSERT INTO journal (object_kind, object_name, verb, params, revision, author, state, created_at, "
                  "started_at, finished_at, result, attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, "
                  "?11)",
                  "adding a journal entry", entry.object_kind, entry.object_name, entry.verb, entry.params,
                  entry.revision, entry.author, to_string(entry.state), entry.created_at, entry.started_at,
                  entry.result, entry.attempt);
    if (!ok) {
        return std::unexpected(ok.error());
    }
    return db.last_insert_rowid();
}

Result<void> Store::journal_mark_running(std::int64_t id, double now)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto ok = run(db,
                  "UPDATE journal SET attempt = attempt + (state = 'running'), state = 'running', started_at = ?2 "
                  "WHERE id = ?1 AND state IN ('pending', 'running')",
                  "marking a journal entry running", id, now);
    if (!ok) {
        return ok;
    }
    if (db.changes() == 1) {
        return {};
    }
    auto state = journal_state_of(db, id);
    if (!state) {
        return std::unexpected(state.error());
    }
    return std::unexpected(db.error(StoreErrorKind::invalid_transition,
                                    ": journal entry " + std::to_string(id) + " is already " + *state +
                                        ", it cannot run again"));
}

Result<void> Store::journal_finish(std::int64_t id, JournalState state, std::string_view result, double now)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    if (!is_finished(state)) {
        return std::unexpected(db.error(StoreErrorKind::invalid_transition,
                                        ": journal entry " + std::to_string(id) + " cannot finish as " +
                                            to_string(state)));
    }
    auto ok = run(db,
                  "UPDATE journal SET state = ?2, result = ?3, finished_at = ?4 "
                  "WHERE id = ?1 AND state IN ('pending', 'running')",
                  "finishing a journal entry", id, to_string(state), result, now);
    if (!ok) {
        return ok;
    }
    if (db.changes() == 1) {
        return {};
    }
    auto current = journal_state_of(db, id);
    if (!current) {
        return std::unexpected(current.error());
    }
    return std::unexpected(db.error(StoreErrorKind::invalid_transition,
                                    ": journal entry " + std::to_string(id) + " is already " + *current));
}

Result<void> Store::journal_cancel(std::int64_t id, std::string_view why, double now)
{
    return journal_finish(id, JournalState::cancelled, why, now);
}

Result<std::int64_t> Store::prune_journal(double before)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto ok = run(db,
                  "DELETE FROM journal WHERE state IN ('done', 'failed', 'cancelled') AND finished_at < ?1",
                  "pruning the journal", before);
    if (!ok) {
        return std::unexpected(ok.error());
    }
    return db.changes();
}

Result<std::int64_t> Store::add_event(const Event& event)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto ok = run(db,
                  "INSERT INTO events (time, object_kind, object_name, name, message, revision, author) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                  "adding an event", event.time, event.object_kind, event.object_name, event.name, event.message,
                  event.revision, event.author);
    if (!ok) {
        return std::unexpected(ok.error());
    }
    return db.last_insert_rowid();
}

Result<std::int64_t> Store::prune_events(double before)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    auto ok = run(db, "DELETE FROM events WHERE time < ?1", "pruning events", before);
    if (!ok) {
        return std::unexpected(ok.error());
    }
    return db.changes();
}

Result<void> Store::save_inspection(const InspectionRecord& record)
{
    std::lock_guard lock(m_connection->mutex);
    return run(m_connection->db,
               "INSERT INTO inspection (name, uuid, inventory, collected_at) VALUES (?1, ?2, ?3, ?4) "
               "ON CONFLICT (name) DO UPDATE SET uuid = excluded.uuid, inventory = excluded.inventory, "
               "collected_at = excluded.collected_at",
               "saving inspection data", record.name, record.uuid, record.inventory, record.collected_at);
}

Result<void> Store::delete_inspection(std::string_view name)
{
    std::lock_guard lock(m_connection->mutex);
    return run(m_connection->db, "DELETE FROM inspection WHERE name = ?1", "deleting inspection data", name);
}

Result<void> Store::put_node_status(const NodeStatus& status)
{
    std::lock_guard lock(m_connection->mutex);
    return run(m_connection->db,
               "INSERT INTO node_status (name, attempts, spec_hash, failed, last_error_type, last_error, "
               "next_attempt_at, applied_secret_hash, since, clean_steps_hash, config_drive_hash, inspected, "
               "was_active, uuid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
               "ON CONFLICT (name) DO UPDATE SET attempts = excluded.attempts, spec_hash = excluded.spec_hash, "
               "failed = excluded.failed, last_error_type = excluded.last_error_type, "
               "last_error = excluded.last_error, next_attempt_at = excluded.next_attempt_at, "
               "applied_secret_hash = excluded.applied_secret_hash, since = excluded.since, "
               "clean_steps_hash = excluded.clean_steps_hash, config_drive_hash = excluded.config_drive_hash, "
               "inspected = excluded.inspected, was_active = excluded.was_active, uuid = excluded.uuid",
               "saving a node status", status.name, status.attempts, status.spec_hash, status.failed,
               status.last_error_type, status.last_error, status.next_attempt_at, status.applied_secret_hash,
               status.since, status.clean_steps_hash, status.config_drive_hash, status.inspected, status.was_active,
               status.uuid);
}

Result<void> Store::delete_node_status(std::string_view name)
{
    std::lock_guard lock(m_connection->mutex);
    return run(m_connection->db, "DELETE FROM node_status WHERE name = ?1", "deleting a node status", name);
}

Result<void> Store::save_inventory(std::string_view revision, const std::vector<KubeInventoryRow>& rows)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    return in_transaction(db, [&]() -> Result<void> {
        if (auto ok = run(db, "DELETE FROM kube_inventory WHERE revision = ?1", "replacing the Kubernetes inventory",
                          revision);
            !ok) {
            return ok;
        }
        for (const auto& row : rows) {
            if (auto ok = run(db,
                              "INSERT INTO kube_inventory (revision, api_version, kind, namespace, name) "
                              "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                              "saving the Kubernetes inventory", revision, row.api_version, row.kind,
                              row.namespace_, row.name);
                !ok) {
                return ok;
            }
        }
        if (auto ok = run(db,
                          "INSERT INTO meta (key, value) VALUES ('kube_inventory.last', ?1) "
                          "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                          "saving the Kubernetes inventory", revision);
            !ok) {
            return ok;
        }
        return prune_by_revision(db, "kube_inventory", revision, revision, m_connection->options.keep_revisions);
    });
}

Result<void> Store::set_meta(std::string_view key, std::string_view value)
{
    std::lock_guard lock(m_connection->mutex);
    return run(m_connection->db,
               "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
               "saving a meta value", key, value);
}

Result<void> Store::delete_meta(std::string_view key)
{
    std::lock_guard lock(m_connection->mutex);
    return run(m_connection->db, "DELETE FROM meta WHERE key = ?1", "deleting a meta value", key);
}

Result<void> Store::put_claim(const ClaimRow& row)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    // The upsert's target is the machine; a node held by another machine
    // violates the node's PRIMARY KEY, and SQLite refuses the statement whole.
    auto done = run(db,
                    "INSERT INTO provider_claims (node, machine_uid, machine_namespace, machine_name, cluster, phase, "
                    "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                    "ON CONFLICT (machine_uid) DO UPDATE SET node = excluded.node, "
                    "machine_namespace = excluded.machine_namespace, machine_name = excluded.machine_name, "
                    "cluster = excluded.cluster, phase = excluded.phase, updated_at = excluded.updated_at",
                    "saving a claim", row.node, row.machine_uid, row.machine_namespace, row.machine_name, row.cluster,
                    row.phase, row.updated_at);
    if (done) {
        return done;
    }
    auto st = db.prepare("SELECT machine_namespace, machine_name FROM provider_claims WHERE node = ?1 AND "
                         "machine_uid <> ?2",
                         "reading a claim");
    if (st) {
        st->bind_all(row.node, row.machine_uid);
        if (auto found = st->step(); found && *found) {
            return std::unexpected(StoreError{"node " + row.node + " is already claimed by MetalsyncMachine " +
                                                  st->text(0) + "/" + st->text(1) + "; not claimed for " +
                                                  row.machine_namespace + "/" + row.machine_name,
                                              done.error().kind});
        }
    }
    return done;
}

Result<bool> Store::delete_claim(std::string_view machine_uid)
{
    std::lock_guard lock(m_connection->mutex);
    auto& db = m_connection->db;
    if (auto done = run(db, "DELETE FROM provider_claims WHERE machine_uid = ?1", "deleting a claim", machine_uid);
        !done) {
        return std::unexpected(done.error());
    }
    return db.changes() > 0;
}

} // namespace metalsync
