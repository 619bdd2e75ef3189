#pragma once

// The ordered schema migrations of the state database.

#include <expected>
#include <span>

#include "store/sqlite.hpp"

namespace metalsync::detail {

struct Migration {
    int version;              // 1, 2, 3, ... without gaps
    const char* description;  // for the log line
    const char* sql;          // schema statements only, no values
};

[[nodiscard]] std::span<const Migration> migrations();

// Highest version recorded in schema_migrations; 0 for a new database.
[[nodiscard]] std::expected<int, StoreError> read_schema_version(Database& db);

// Applies every migration newer than the database's version, each in its own
// BEGIN IMMEDIATE transaction. Refuses a database newer than the code.
[[nodiscard]] std::expected<void, StoreError> migrate(Database& db);

// The refusal for a database written by a newer metalsync.
[[nodiscard]] StoreError schema_too_new(const Database& db, int version);

} // namespace metalsync::detail
