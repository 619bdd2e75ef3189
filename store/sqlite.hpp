#pragma once

// Thin RAII wrapper over the SQLite C API, private to the store. Values are
// always bound to prepared statements; exec() is for SQL that holds none.

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "store/store_error.hpp"

namespace metalsync::detail {

class Database;

// A prepared statement, usually borrowed from the connection's cache. Reset
// and unbound when it goes out of scope, so no read snapshot outlives it.
class Statement {
public:
    Statement(Database& db, sqlite3_stmt* stmt, const char* doing, bool owned);
    Statement(Statement&& other) noexcept;
    Statement& operator=(Statement&&) = delete;
    Statement(const Statement&) = delete;
    ~Statement();

    void bind(int index, std::string_view value);
    void bind(int index, const std::string& value) { bind(index, std::string_view(value)); }
    void bind(int index, const char* value) { bind(index, std::string_view(value != nullptr ? value : "")); }
    void bind(int index, std::int64_t value);
    void bind(int index, int value) { bind(index, static_cast<std::int64_t>(value)); }
    void bind(int index, bool value) { bind(index, static_cast<std::int64_t>(value ? 1 : 0)); }
    void bind(int index, double value);
    void bind(int index, std::nullopt_t);
    void bind(int index, const nlohmann::json& value);
    template <typename T>
    void bind(int index, const std::optional<T>& value)
    {
        if (value) {
            bind(index, *value);
        } else {
            bind(index, std::nullopt);
        }
    }
    template <typename... Args>
    Statement& bind_all(const Args&... args)
    {
        int index = 1;
        (bind(index++, args), ...);
        return *this;
    }

    // Steps once: true while a row is available.
    [[nodiscard]] std::expected<bool, StoreError> step();
    // Runs to completion (statements without result rows).
    [[nodiscard]] std::expected<void, StoreError> run();

    [[nodiscard]] bool is_null(int column) const;
    [[nodiscard]] std::string text(int column) const;
    [[nodiscard]] std::int64_t integer(int column) const;
    [[nodiscard]] double real(int column) const;
    [[nodiscard]] std::optional<double> optional_real(int column) const;
    // Parses a JSON column; a malformed value is a StoreErrorKind::corrupt error.
    [[nodiscard]] std::expected<nlohmann::json, StoreError> json(int column) const;

private:
    Database* m_db;
    sqlite3_stmt* m_stmt;
    const char* m_doing;
    bool m_owned;
    int m_bind_rc = SQLITE_OK;
};

class Database {
public:
    [[nodiscard]] static std::expected<Database, StoreError> open(const std::filesystem::path& path, bool read_only,
                                                                  std::chrono::milliseconds busy_timeout);
    Database(Database&& other) noexcept;
    Database& operator=(Database&&) = delete;
    Database(const Database&) = delete;
    ~Database();

    // SQL without values (schema, pragmas, transaction control).
    [[nodiscard]] std::expected<void, StoreError> exec(const std::string& sql, const char* doing);
    // `doing` names the operation for error messages ("adding a journal entry").
    [[nodiscard]] std::expected<Statement, StoreError> prepare(const std::string& sql, const char* doing);

    [[nodiscard]] StoreError error(int rc, std::string_view doing) const;
    [[nodiscard]] StoreError error(StoreErrorKind kind, std::string_view text) const;

    [[nodiscard]] const std::filesystem::path& path() const { return m_path; }
    [[nodiscard]] std::chrono::milliseconds busy_timeout() const { return m_busy_timeout; }
    [[nodiscard]] std::int64_t changes() const;
    [[nodiscard]] std::int64_t last_insert_rowid() const;
    [[nodiscard]] bool in_transaction() const;
    [[nodiscard]] int next_savepoint() { return ++m_savepoints; }

private:
    friend class Statement;
    Database(sqlite3* db, std::filesystem::path path, std::chrono::milliseconds busy_timeout);
    void give_back(sqlite3_stmt* stmt);

    sqlite3* m_db;
    std::filesystem::path m_path;
    std::chrono::milliseconds m_busy_timeout;
    int m_savepoints = 0;
    struct Cached {
        sqlite3_stmt* stmt = nullptr;
        bool in_use = false;
    };
    std::unordered_map<std::string, Cached> m_cache;
};

// A transaction scope: BEGIN (IMMEDIATE for writes) when none is open,
// otherwise a SAVEPOINT inside the open one. Rolls back unless committed.
class TransactionScope {
public:
    [[nodiscard]] static std::expected<TransactionScope, StoreError> begin(Database& db, bool write);
    TransactionScope(TransactionScope&& other) noexcept;
    TransactionScope& operator=(TransactionScope&&) = delete;
    TransactionScope(const TransactionScope&) = delete;
    ~TransactionScope();

    [[nodiscard]] std::expected<void, StoreError> commit();
    void rollback();

private:
    TransactionScope(Database& db, std::string savepoint) : m_db(&db), m_savepoint(std::move(savepoint)) {}
    Database* m_db;
    std::string m_savepoint;
    bool m_open = true;
};

// Transaction control shared by TransactionScope and the public Transaction.
[[nodiscard]] std::expected<std::string, StoreError> begin_transaction(Database& db, bool write);
[[nodiscard]] std::expected<void, StoreError> commit_transaction(Database& db, const std::string& savepoint);
void rollback_transaction(Database& db, const std::string& savepoint);

[[nodiscard]] std::string dump_json(const nlohmann::json& value);

} // namespace metalsync::detail
