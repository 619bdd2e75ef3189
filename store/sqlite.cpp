#include "store/sqlite.hpp"

#include <cerrno>
#include <utility>

namespace metalsync::detail {

namespace {

constexpr int k_sqlite_ok_row = SQLITE_ROW;

} // namespace

Statement::Statement(Database& db, sqlite3_stmt* stmt, const char* doing, bool owned)
    : m_db(&db), m_stmt(stmt), m_doing(doing), m_owned(owned)
{
}

Statement::Statement(Statement&& other) noexcept
    : m_db(other.m_db), m_stmt(std::exchange(other.m_stmt, nullptr)), m_doing(other.m_doing), m_owned(other.m_owned),
      m_bind_rc(other.m_bind_rc)
{
}

Statement::~Statement()
{
    if (m_stmt == nullptr) {
        return;
    }
    if (m_owned) {
        sqlite3_finalize(m_stmt);
    } else {
        sqlite3_reset(m_stmt);
        sqlite3_clear_bindings(m_stmt);
        m_db->give_back(m_stmt);
    }
}

void Statement::bind(int index, std::string_view value)
{
    // An empty string_view may have a null data(), which SQLite would bind as NULL.
    const char* data = value.data() != nullptr ? value.data() : "";
    const int rc = sqlite3_bind_text64(m_stmt, index, data, value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    if (rc != SQLITE_OK && m_bind_rc == SQLITE_OK) {
        m_bind_rc = rc;
    }
}

void Statement::bind(int index, std::int64_t value)
{
    const int rc = sqlite3_bind_int64(m_stmt, index, value);
    if (rc != SQLITE_OK && m_bind_rc == SQLITE_OK) {
        m_bind_rc = rc;
    }
}

void Statement::bind(int index, double value)
{
    const int rc = sqlite3_bind_double(m_stmt, index, value);
    if (rc != SQLITE_OK && m_bind_rc == SQLITE_OK) {
        m_bind_rc = rc;
    }
}

void Statement::bind(int index, std::nullopt_t)
{
    const int rc = sqlite3_bind_null(m_stmt, index);
    if (rc != SQLITE_OK && m_bind_rc == SQLITE_OK) {
        m_bind_rc = rc;
    }
}

void Statement::bind(int index, const nlohmann::json& value)
{
    bind(index, std::string_view(dump_json(value)));
}

std::expected<bool, StoreError> Statement::step()
{
    if (m_bind_rc != SQLITE_OK) {
        return std::unexpected(m_db->error(m_bind_rc, m_doing));
    }
    const int rc = sqlite3_step(m_stmt);
    if (rc == k_sqlite_ok_row) {
        return true;
    }
    if (rc == SQLITE_DONE) {
        return false;
    }
    return std::unexpected(m_db->error(rc, m_doing));
}

std::expected<void, StoreError> Statement::run()
{
    while (true) {
        auto row = step();
        if (!row) {
            return std::unexpected(row.error());
        }
        if (!*row) {
            return {};
        }
    }
}

bool Statement::is_null(int column) const
{
    return sqlite3_column_type(m_stmt, column) == SQLITE_NULL;
}

std::string Statement::text(int column) const
{
    const auto* data = sqlite3_column_text(m_stmt, column);
    const int size = sqlite3_column_bytes(m_stmt, column);
    if (data == nullptr) {
        return {};
    }
    return std::string(reinterpret_cast<const char*>(data), static_cast<std::size_t>(size));
}

std::int64_t Statement::integer(int column) const
{
    return sqlite3_column_int64(m_stmt, column);
}

double Statement::real(int column) const
{
    return sqlite3_column_double(m_stmt, column);
}

std::optional<double> Statement::optional_real(int column) const
{
    if (is_null(column)) {
        return std::nullopt;
    }
    return real(column);
}

std::expected<nlohmann::json, StoreError> Statement::json(int column) const
{
    if (is_null(column)) {
        return nlohmann::json();
    }
    auto value = nlohmann::json::parse(text(column), nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) {
        const char* name = sqlite3_column_name(m_stmt, column);
        return std::unexpected(m_db->error(StoreErrorKind::corrupt,
                                           std::string(" holds malformed JSON in column ") + (name ? name : "?") +
                                               " while " + m_doing));
    }
    return value;
}

Database::Database(sqlite3* db, std::filesystem::path path, std::chrono::milliseconds busy_timeout)
    : m_db(db), m_path(std::move(path)), m_busy_timeout(busy_timeout)
{
}

Database::Database(Database&& other) noexcept
    : m_db(std::exchange(other.m_db, nullptr)), m_path(std::move(other.m_path)),
      m_busy_timeout(other.m_busy_timeout), m_savepoints(other.m_savepoints), m_cache(std::move(other.m_cache))
{
    other.m_cache.clear();
}

Database::~Database()
{
    for (auto& [sql, cached] : m_cache) {
        sqlite3_finalize(cached.stmt);
    }
    if (m_db != nullptr) {
        // close_v2: never fails for statements left open; the last finalize closes.
        sqlite3_close_v2(m_db);
    }
}

std::expected<Database, StoreError> Database::open(const std::filesystem::path& path, bool read_only,
                                                   std::chrono::milliseconds busy_timeout)
{
    sqlite3* db = nullptr;
    const int flags = (read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) |
                      SQLITE_OPEN_NOMUTEX;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    Database database(db, path, busy_timeout);
    if (rc != SQLITE_OK) {
        return std::unexpected(database.error(rc, "opening it"));
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));
    return database;
}

std::expected<void, StoreError> Database::exec(const std::string& sql, const char* doing)
{
    char* message = nullptr;
    const int rc = sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &message);
    sqlite3_free(message);
    if (rc != SQLITE_OK) {
        return std::unexpected(error(rc, doing));
    }
    return {};
}

std::expected<Statement, StoreError> Database::prepare(const std::string& sql, const char* doing)
{
    auto it = m_cache.find(sql);
    if (it != m_cache.end() && !it->second.in_use) {
        it->second.in_use = true;
        return Statement(*this, it->second.stmt, doing, /*owned=*/false);
    }
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(m_db, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                      &stmt, nullptr);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        return std::unexpected(error(rc, doing));
    }
    if (it != m_cache.end()) {
        // The cached copy is busy (a nested use of the same SQL): use a private one.
        return Statement(*this, stmt, doing, /*owned=*/true);
    }
    m_cache.emplace(sql, Cached{stmt, true});
    return Statement(*this, stmt, doing, /*owned=*/false);
}

void Database::give_back(sqlite3_stmt* stmt)
{
    for (auto& [sql, cached] : m_cache) {
        if (cached.stmt == stmt) {
            cached.in_use = false;
            return;
        }
    }
}

std::int64_t Database::changes() const
{
    return sqlite3_changes64(m_db);
}

std::int64_t Database::last_insert_rowid() const
{
    return sqlite3_last_insert_rowid(m_db);
}

bool Database::in_transaction() const
{
    return sqlite3_get_autocommit(m_db) == 0;
}

StoreError Database::error(StoreErrorKind kind, std::string_view text) const
{
    return StoreError{"state database " + m_path.string() + std::string(text), kind};
}

StoreError Database::error(int rc, std::string_view doing) const
{
    const std::string detail = m_db != nullptr ? sqlite3_errmsg(m_db) : sqlite3_errstr(rc);
    const std::string what(doing);
    const int system_errno = m_db != nullptr ? sqlite3_system_errno(m_db) : 0;
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return error(StoreErrorKind::disk_full,
                     ": disk is full while " + what + " (" + detail +
                         "); nothing was written, free space on its file system");
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return error(StoreErrorKind::locked,
                     " is locked by another writer (is a second metalsync using it?); gave up after " +
                         std::to_string(m_busy_timeout.count()) + " ms while " + what);
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return error(StoreErrorKind::corrupt,
                     " is corrupt or not a SQLite database (" + detail + ") while " + what +
                         "; restore a backup or move it aside");
    case SQLITE_READONLY:
        return error(StoreErrorKind::other, " is read-only (" + detail + ") while " + what);
    case SQLITE_CANTOPEN:
        return error(StoreErrorKind::other, " cannot be opened (" + detail + ") while " + what);
    case SQLITE_IOERR:
        if (system_errno == ENOSPC) {
            return error(StoreErrorKind::disk_full,
                         ": disk is full while " + what + " (" + detail +
                             "); nothing was written, free space on its file system");
        }
        return error(StoreErrorKind::other, ": I/O error while " + what + " (" + detail + ")");
    default:
        return error(StoreErrorKind::other, ": error while " + what + ": " + detail);
    }
}

std::expected<std::string, StoreError> begin_transaction(Database& db, bool write)
{
    if (!db.in_transaction()) {
        auto begun = db.exec(write ? "BEGIN IMMEDIATE" : "BEGIN", "starting a transaction");
        if (!begun) {
            return std::unexpected(begun.error());
        }
        return std::string();
    }
    // Savepoint names are generated here from a counter, never from input.
    std::string savepoint = "metalsync_sp_" + std::to_string(db.next_savepoint());
    auto begun = db.exec("SAVEPOINT " + savepoint, "starting a savepoint");
    if (!begun) {
        return std::unexpected(begun.error());
    }
    return savepoint;
}

std::expected<void, StoreError> commit_transaction(Database& db, const std::string& savepoint)
{
    if (!db.in_transaction()) {
        // SQLite rolls a transaction back by itself after some errors (SQLITE_FULL, ...).
        return std::unexpected(db.error(StoreErrorKind::other,
                                        " rolled the transaction back after an earlier error; nothing was committed"));
    }
    if (savepoint.empty()) {
        auto committed = db.exec("COMMIT", "committing");
        if (!committed) {
            rollback_transaction(db, savepoint);
        }
        return committed;
    }
    return db.exec("RELEASE " + savepoint, "releasing a savepoint");
}

void rollback_transaction(Database& db, const std::string& savepoint)
{
    if (!db.in_transaction()) {
        return;
    }
    if (savepoint.empty()) {
        (void)db.exec("ROLLBACK", "rolling back");
        return;
    }
    (void)db.exec("ROLLBACK TO " + savepoint, "rolling back to a savepoint");
    (void)db.exec("RELEASE " + savepoint, "releasing a savepoint");
}

std::expected<TransactionScope, StoreError> TransactionScope::begin(Database& db, bool write)
{
    auto savepoint = begin_transaction(db, write);
    if (!savepoint) {
        return std::unexpected(savepoint.error());
    }
    return TransactionScope(db, std::move(*savepoint));
}

TransactionScope::TransactionScope(TransactionScope&& other) noexcept
    : m_db(other.m_db), m_savepoint(std::move(other.m_savepoint)), m_open(std::exchange(other.m_open, false))
{
}

TransactionScope::~TransactionScope()
{
    rollback();
}

std::expected<void, StoreError> TransactionScope::commit()
{
    m_open = false;
    return commit_transaction(*m_db, m_savepoint);
}

void TransactionScope::rollback()
{
    if (m_open) {
        m_open = false;
        rollback_transaction(*m_db, m_savepoint);
    }
}

std::string dump_json(const nlohmann::json& value)
{
    // `replace` keeps dump() from throwing on invalid UTF-8 from a remote API.
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace metalsync::detail
