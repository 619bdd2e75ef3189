#pragma once

// What running one planned Action did. Returned by the action runners (Ironic
// now, Kubernetes later) to the executor, which journals it and updates the
// node's memory in the store.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace metalsync {

struct ActionResult {
    bool ok = false;
    bool retryable = false;   // transient (NodeLocked, 503, connection): the next tick tries again
    std::string error_type;   // "validation" | "locked" | "unavailable" | "credentials" | "not-found" | "conflict" | "internal"
    std::string error;        // operator-facing, already redacted: never a credential
    std::string summary;      // one line of what was done, for the event log ("deploy requested (image ...)")
    std::string uuid;         // Ironic uuid of the node when known (create, adopt)

    // Memory updates to persist when ok (unset = unchanged).
    std::optional<std::string> applied_secret_hash;
    std::optional<std::string> clean_steps_hash;
    std::optional<std::string> config_drive_hash;
    std::optional<bool> inspected;
    std::optional<bool> was_active;
    // collect_inspection: what was read, as collected_inspection() shapes it
    // (reconcilers/inspection.hpp); the daemon stores it.
    std::optional<nlohmann::json> inspection;
};

} // namespace metalsync
