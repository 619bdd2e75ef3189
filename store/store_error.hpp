#pragma once

// The one error type of the store. Every fallible store call returns
// std::expected<T, StoreError>; nothing throws out of the store's API.

#include <string>

namespace metalsync {

enum class StoreErrorKind {
    other,
    disk_full,           // SQLITE_FULL or ENOSPC: free space, the database is intact
    locked,              // another writer held the lock past busy_timeout
    corrupt,             // not a SQLite file, a damaged one, or a row the code cannot read
    schema_too_new,      // written by a newer metalsync
    not_found,           // a journal entry or similar addressed by id does not exist
    invalid_transition,  // e.g. finishing a journal entry that is already finished
};

struct StoreError {
    std::string message;  // complete sentence for logs and socket replies, names the database
    StoreErrorKind kind = StoreErrorKind::other;
};

} // namespace metalsync
