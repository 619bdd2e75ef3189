#pragma once

// The rows the store keeps, as plain structs. Times are unix seconds (REAL
// where sub-second order matters, INTEGER for Git timestamps).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace metalsync {

enum class RevisionStatus { accepted, rejected };

struct RevisionRecord {
    std::string commit_id;
    std::string author_name;
    std::string author_email;
    std::int64_t committed_at = 0;  // the commit's own time
    std::int64_t seen_at = 0;       // when this daemon first (or last) evaluated it
    RevisionStatus status = RevisionStatus::accepted;
    std::vector<std::string> errors;  // diagnostics `file:line:col: field: reason`
    std::string summary;
};

enum class DesiredKind { node, node_class, policy, kube_object };

// One object of a revision's desired state. `body` is the object as JSON;
// a Node's body names its credentials file, never holds a password.
struct DesiredObjectRow {
    DesiredKind kind = DesiredKind::node;
    std::string namespace_;  // empty except for namespaced Kubernetes objects
    std::string name;
    std::string spec_hash;
    nlohmann::json body = nlohmann::json::object();
};

enum class JournalState { pending, running, done, failed, cancelled };

// One action of the executor, written before it runs and marked after.
struct JournalEntry {
    std::int64_t id = 0;  // assigned by journal_add
    std::string object_kind;  // "Node", "KubeObject", ...
    std::string object_name;
    std::string verb;         // "deploy", "set-provision-state", "apply", ...
    nlohmann::json params = nlohmann::json::object();
    std::string revision;
    std::string author;
    JournalState state = JournalState::pending;
    double created_at = 0;
    std::optional<double> started_at;
    std::optional<double> finished_at;
    std::string result;
    int attempt = 1;  // journal_mark_running on a running entry (re-run after a crash) adds one
};

struct Event {
    std::int64_t id = 0;  // assigned by add_event
    double time = 0;
    std::string object_kind;
    std::string object_name;
    std::string name;     // stable event name, e.g. "node.deploy.requested"
    std::string message;
    std::string revision;
    std::string author;
};

struct EventFilter {
    std::optional<std::string> object_kind;
    std::optional<std::string> object_name;
    std::optional<std::string> name;  // exact event name
    std::optional<double> since;      // time >= since
    int limit = 100;                  // <= 0 means 100
};

struct InspectionRecord {
    std::string name;  // node name
    std::string uuid;  // Ironic node uuid at collection time
    nlohmann::json inventory = nlohmann::json::object();
    double collected_at = 0;
};

// What the node reconciler remembers about one node between ticks.
struct NodeStatus {
    std::string name;
    int attempts = 0;                  // attempts at the current failing step
    std::string spec_hash;             // spec the attempts count against; a change resets them
    bool failed = false;               // gave up after max_retries
    std::string last_error_type;
    std::string last_error;
    std::optional<double> next_attempt_at;
    std::string applied_secret_hash;   // HMAC of the credentials last applied; never the secret
    std::optional<double> since;       // when the node reached its current provision state
    // Since schema 2: the rest of what the planner remembers (NodeMemory).
    std::string clean_steps_hash;      // manual clean steps already requested for this list
    std::string config_drive_hash;     // config drive the node was last deployed with
    bool inspected = false;            // inspection requested since enrollment
    bool was_active = false;           // last seen active: adopt, never redeploy, if Ironic forgets it
    std::string uuid;                  // last Ironic uuid seen
};

// A claim of metalsync's Cluster API provider: the MetalsyncMachine that
// holds a node (provider::ClaimRecord, converted in reconcilers/provider/objects).
struct ClaimRow {
    std::string node;
    std::string machine_namespace;
    std::string machine_name;
    std::string machine_uid;
    std::string cluster;
    std::string phase;  // claimed | releasing
    double updated_at = 0;

    friend bool operator==(const ClaimRow&, const ClaimRow&) = default;
};

struct KubeInventoryRow {
    std::string api_version;
    std::string kind;
    std::string namespace_;
    std::string name;

    friend bool operator==(const KubeInventoryRow&, const KubeInventoryRow&) = default;
};

struct KubeInventory {
    std::string revision;
    std::vector<KubeInventoryRow> rows;
};

[[nodiscard]] const char* to_string(RevisionStatus status);
[[nodiscard]] const char* to_string(DesiredKind kind);  // "Node", "NodeClass", "Policy", "KubeObject"
[[nodiscard]] const char* to_string(JournalState state);
[[nodiscard]] std::optional<RevisionStatus> parse_revision_status(std::string_view text);
[[nodiscard]] std::optional<DesiredKind> parse_desired_kind(std::string_view text);
[[nodiscard]] std::optional<JournalState> parse_journal_state(std::string_view text);
[[nodiscard]] bool is_finished(JournalState state);

} // namespace metalsync
