#pragma once

// The status metalsync writes on MetalsyncMachines and MetalsyncClusters,
// built from a claim decision. Pure: the time is an argument.
//
// What Cluster API reads (kubernetes-sigs/cluster-api, docs/book/src/developer/
// providers/contracts/infra-machine.md and infra-cluster.md):
//   - status.initialization.provisioned (v1beta2 contract) and status.ready
//     (v1beta1): true once, when the machine's node is deployed and
//     spec.providerID is set; they never go back to false.
//   - status.conditions: metav1 Conditions; Ready is mirrored into the
//     Machine's InfrastructureReady and must describe the whole life,
//     deletion included; Paused says whether reconciliation is paused.
//   - terminal failures: under v1beta2 only conditions (Ready=False with a
//     documented reason); the deprecated failureReason/failureMessage are read
//     at status.failureReason/failureMessage by the v1beta1 contract and at
//     status.deprecated.v1beta1.failureReason/failureMessage by Cluster API
//     v1.11+ (internal/contract/api/v1beta2/inframachine_types.go). metalsync
//     writes both, with the same values.
//   - status.addresses, status.failureDomain (where the machine was placed).

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/provider/claim.hpp"
#include "reconcilers/provider/pool.hpp"

namespace metalsync::provider {

inline constexpr const char* k_condition_ready = "Ready";
inline constexpr const char* k_condition_provisioned = "Provisioned";
inline constexpr const char* k_condition_paused = "Paused";
inline constexpr const char* k_reason_not_paused = "NotPaused";
inline constexpr const char* k_reason_waiting_for_endpoint = "WaitingForControlPlaneEndpoint";

// metav1.Condition.
struct Condition {
    std::string type;
    std::string status;  // True | False | Unknown
    std::string reason;
    std::string message;
    std::int64_t observed_generation = 0;
    std::string last_transition_time;  // RFC 3339

    bool operator==(const Condition&) const = default;
};

[[nodiscard]] const Condition* find_condition(const std::vector<Condition>& conditions, std::string_view type);

// As Kubernetes' meta.SetStatusCondition: a new condition is added; an
// existing one takes the new reason, message and observedGeneration, and its
// lastTransitionTime changes (to `now`) only when its status changes.
void set_condition(std::vector<Condition>& conditions, Condition condition, std::string_view now);

// MetalsyncMachine.status.
struct MachineStatus {
    std::optional<bool> provisioned;  // initialization.provisioned; absent until first set
    bool ready = false;               // v1beta1: the same as provisioned
    std::vector<MachineAddress> addresses;
    std::string node;                 // status.node: one of the claim's three places
    std::string failure_domain;       // zone of the claimed node
    std::string failure_reason;       // Cluster API MachineStatusError, terminal failures only
    std::string failure_message;
    std::vector<Condition> conditions;

    bool operator==(const MachineStatus&) const = default;
};

// The status after `decision`, from the status as read. `generation` is the
// MetalsyncMachine's metadata.generation; `now` an RFC 3339 time.
[[nodiscard]] MachineStatus machine_status(const ClaimDecision& decision, const MachineStatus& previous,
                                           std::int64_t generation, std::string_view now);

// The status subresource's body. Empty fields are left out (the CRD wants
// strings non-empty), so the wiring must replace the status whole (PUT
// .../status, or server-side apply as the only manager of these fields) for a
// cleared field to disappear.
[[nodiscard]] nlohmann::json to_json(const MachineStatus& status);
[[nodiscard]] std::expected<MachineStatus, std::string> machine_status_from_json(const nlohmann::json& status);

// MetalsyncCluster.status. The cluster's infrastructure is the bastion's
// Ironic and the pools in Git: nothing to build, so it is provisioned once
// Git gives the control plane endpoint (Cluster API copies it to the Cluster,
// and the control plane provider needs it).
struct ClusterStatus {
    std::optional<bool> provisioned;
    bool ready = false;
    std::vector<std::string> failure_domains;  // written only under the v1beta2 contract (see the CRD)
    std::vector<Condition> conditions;

    bool operator==(const ClusterStatus&) const = default;
};

struct ClusterInputs {
    bool endpoint_set = false;     // spec.controlPlaneEndpoint.host is set
    bool paused = false;
    bool v1beta2_contract = true;  // the management cluster reads the v1beta2 contract (Cluster API v1.11+)
    std::int64_t generation = 0;
};

[[nodiscard]] ClusterStatus cluster_status(const ClusterInputs& inputs, const std::vector<PoolNode>& nodes,
                                           const ClusterStatus& previous, std::string_view now);
[[nodiscard]] nlohmann::json to_json(const ClusterStatus& status, bool v1beta2_contract);

} // namespace metalsync::provider
