#pragma once

// What a Store or StoreReader owns: its SQLite connection and the mutex that
// serialises calls on it.

#include <mutex>

#include "store/sqlite.hpp"
#include "store/store.hpp"

namespace metalsync::detail {

struct Connection {
    Connection(Database database, StoreOptions opts) : db(std::move(database)), options(opts) {}
    Database db;
    StoreOptions options;
    std::mutex mutex;
};

} // namespace metalsync::detail
