// Opening the state database: file creation, pragmas, migrations; and the
// Transaction handle.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

#include <spdlog/spdlog.h>

#include "store/connection.hpp"
#include "store/migrations.hpp"
#include "store/store.hpp"

namespace metalsync {

namespace {

StoreError plain_error(const std::filesystem::path& path, const std::string& text, StoreErrorKind kind)
{
    return StoreError{"state database " + path.string() + text, kind};
}

// Creates the file with mode 0600 before SQLite does (SQLite would use 0644),
// so the -wal and -shm files, which copy its mode, are private too.
std::expected<void, StoreError> create_private_file(const std::filesystem::path& path)
{
    const auto directory = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    std::error_code ec;
    if (!std::filesystem::is_directory(directory, ec)) {
        return std::unexpected(plain_error(path, ": directory " + directory.string() + " does not exist",
                                           StoreErrorKind::other));
    }
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ::close(fd);
        return {};
    }
    if (errno == EEXIST) {
        return {};
    }
    const int saved = errno;
    return std::unexpected(plain_error(path, ": cannot create it: " + std::string(std::strerror(saved)),
                                       saved == ENOSPC ? StoreErrorKind::disk_full : StoreErrorKind::other));
}

std::expected<std::string, StoreError> pragma_text(detail::Database& db, const char* sql, const char* doing)
{
    auto st = db.prepare(sql, doing);
    if (!st) {
        return std::unexpected(st.error());
    }
    auto row = st->step();
    if (!row) {
        return std::unexpected(row.error());
    }
    return *row ? st->text(0) : std::string();
}

std::expected<void, StoreError> configure_writer(detail::Database& db, const StoreOptions& options)
{
    // journal_mode and synchronous take no bound parameters; the values are constants.
    auto mode = pragma_text(db, "PRAGMA journal_mode = WAL", "turning on WAL mode");
    if (!mode) {
        return std::unexpected(mode.error());
    }
    if (*mode != "wal") {
        return std::unexpected(db.error(StoreErrorKind::other,
                                        " cannot use WAL mode (journal_mode is " + *mode +
                                            "); put it on a local file system"));
    }
    // FULL: a journal entry written before an action must survive a power cut.
    if (auto ok = db.exec("PRAGMA synchronous = FULL", "setting synchronous"); !ok) {
        return std::unexpected(ok.error());
    }
    if (auto ok = db.exec("PRAGMA foreign_keys = ON", "turning on foreign keys"); !ok) {
        return std::unexpected(ok.error());
    }
    auto fk = pragma_text(db, "PRAGMA foreign_keys", "checking foreign keys");
    if (!fk) {
        return std::unexpected(fk.error());
    }
    if (*fk != "1") {
        return std::unexpected(db.error(StoreErrorKind::other, ": this SQLite build cannot enforce foreign keys"));
    }
    if (options.max_size_bytes) {
        auto page_size = pragma_text(db, "PRAGMA page_size", "reading the page size");
        if (!page_size) {
            return std::unexpected(page_size.error());
        }
        std::int64_t size = 4096;
        std::from_chars(page_size->data(), page_size->data() + page_size->size(), size);
        size = std::max<std::int64_t>(1, size);
        const std::int64_t pages = std::max<std::int64_t>(1, *options.max_size_bytes / size);
        // An integer computed here, not input text: PRAGMA cannot take a bound value.
        if (auto ok = db.exec("PRAGMA max_page_count = " + std::to_string(pages), "capping its size"); !ok) {
            return std::unexpected(ok.error());
        }
    }
    return {};
}

} // namespace

int store_schema_version_known()
{
    return detail::migrations().back().version;
}

StoreReads::StoreReads(std::unique_ptr<detail::Connection> connection) : m_connection(std::move(connection)) {}
StoreReads::~StoreReads() = default;
StoreReads::StoreReads(StoreReads&&) noexcept = default;
StoreReads& StoreReads::operator=(StoreReads&&) noexcept = default;

const std::filesystem::path& StoreReads::path() const
{
    return m_connection->db.path();
}

std::expected<Store, StoreError> Store::open(const std::filesystem::path& path, const StoreOptions& options)
{
    if (auto created = create_private_file(path); !created) {
        return std::unexpected(created.error());
    }
    auto db = detail::Database::open(path, /*read_only=*/false, options.busy_timeout);
    if (!db) {
        return std::unexpected(db.error());
    }
    auto connection = std::make_unique<detail::Connection>(std::move(*db), options);
    if (auto configured = configure_writer(connection->db, options); !configured) {
        return std::unexpected(configured.error());
    }
    if (auto migrated = detail::migrate(connection->db); !migrated) {
        return std::unexpected(migrated.error());
    }
    return Store(std::move(connection));
}

std::expected<StoreReader, StoreError> StoreReader::open(const std::filesystem::path& path,
                                                         const StoreOptions& options)
{
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
        return std::unexpected(plain_error(path, " does not exist (the daemon creates it)", StoreErrorKind::other));
    }
    auto db = detail::Database::open(path, /*read_only=*/true, options.busy_timeout);
    if (!db) {
        return std::unexpected(db.error());
    }
    auto connection = std::make_unique<detail::Connection>(std::move(*db), options);
    auto& database = connection->db;
    auto mode = pragma_text(database, "PRAGMA journal_mode", "reading its journal mode");
    if (!mode) {
        return std::unexpected(mode.error());
    }
    auto version = detail::read_schema_version(database);
    if (!version) {
        return std::unexpected(version.error());
    }
    if (*version > store_schema_version_known()) {
        return std::unexpected(detail::schema_too_new(database, *version));
    }
    if (*version < store_schema_version_known()) {
        return std::unexpected(database.error(StoreErrorKind::other,
                                              " has schema version " + std::to_string(*version) +
                                                  ", expected " + std::to_string(store_schema_version_known()) +
                                                  "; open it with the writer (the daemon) first"));
    }
    return StoreReader(std::move(connection));
}

std::expected<Transaction, StoreError> Store::transaction()
{
    std::lock_guard lock(m_connection->mutex);
    auto savepoint = detail::begin_transaction(m_connection->db, /*write=*/true);
    if (!savepoint) {
        return std::unexpected(savepoint.error());
    }
    return Transaction(m_connection.get(), std::move(*savepoint));
}

Transaction::Transaction(detail::Connection* connection, std::string savepoint)
    : m_connection(connection), m_savepoint(std::move(savepoint))
{
}

Transaction::Transaction(Transaction&& other) noexcept
    : m_connection(other.m_connection), m_savepoint(std::move(other.m_savepoint)),
      m_open(std::exchange(other.m_open, false))
{
}

Transaction::~Transaction()
{
    rollback();
}

std::expected<void, StoreError> Transaction::commit()
{
    if (!m_open) {
        return std::unexpected(StoreError{"transaction already committed or rolled back", StoreErrorKind::other});
    }
    m_open = false;
    std::lock_guard lock(m_connection->mutex);
    return detail::commit_transaction(m_connection->db, m_savepoint);
}

void Transaction::rollback()
{
    if (!m_open) {
        return;
    }
    m_open = false;
    std::lock_guard lock(m_connection->mutex);
    detail::rollback_transaction(m_connection->db, m_savepoint);
}

} // namespace metalsync
