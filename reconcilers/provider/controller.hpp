#pragma once

// metalsync's Cluster API infrastructure provider, one pass. Pure: what the
// management cluster holds (read by the Kubernetes worker into a
// ProviderView), the nodes as Git and Ironic know them, and the store's
// claims in; what to write where out. The daemon applies a ProviderPlan in
// the order claim.hpp prescribes: the store first, then Ironic (through the
// executor, journalled and rate-limited like every other Ironic action), then
// the Kubernetes objects (queued to the Kubernetes worker), the store's
// deletions last.
//
// Two threads meet here. The Kubernetes worker lists MetalsyncMachines,
// MetalsyncClusters, Machines and Clusters and reads bootstrap Secrets on its
// own thread (a slow API server never delays the Ironic loop); the loop
// thread plans on its latest complete view and a complete Ironic observation
// of the same pass. A view a few seconds old is safe: every decision is one
// idempotent step of reconcile_claim, recomputed each pass from all three
// places, and the store's claims (written synchronously by the loop) are what
// keeps two machines off one node.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/plan.hpp"
#include "reconcilers/provider/claim.hpp"
#include "reconcilers/provider/conditions.hpp"
#include "reconcilers/provider/pool.hpp"
#include "sources/desired_state.hpp"

namespace metalsync::provider {

inline constexpr const char* k_provider_field_manager = "metalsync-provider";

// One MetalsyncMachine with what its owners say.
struct MachineView {
    Machine machine;                          // from the object, its Machine and its Cluster
    std::string resource_version;
    std::vector<std::string> finalizers;
    MachineStatus status;                     // as read
    std::string owner_machine;                // the owning Machine's name; empty: none yet
    std::string bootstrap_secret;             // the Machine's spec.bootstrap.dataSecretName; empty: none yet
    std::optional<BootstrapData> bootstrap;   // read by the worker while the machine is not provisioned
    std::string bootstrap_problem;            // the Secret exists but cannot be used
    std::string problem;                      // the object itself cannot be read (reported, not acted on)
};

struct ClusterView {
    std::string namespace_;
    std::string name;
    std::string uid;
    std::string cluster;  // label cluster.x-k8s.io/cluster-name
    std::int64_t generation = 0;
    bool endpoint_set = false;
    bool paused = false;
    bool deleting = false;
    std::string resource_version;
    std::vector<std::string> finalizers;
    ClusterStatus status;  // as read
};

struct ProviderView {
    bool complete = false;       // every list answered: claims of machines not listed may be released
    std::string error;           // why not complete
    double read_at = 0;          // unix seconds
    bool v1beta2_contract = true;
    std::vector<MachineView> machines;
    std::vector<ClusterView> clusters;
};

// The view from the objects as listed (any apiVersion of Machine and
// Cluster: v1beta2 and v1beta1 field names are both read). Bootstrap data is
// not read here: the worker fetches the Secrets the view names.
[[nodiscard]] ProviderView assemble_view(const std::vector<nlohmann::json>& metalsync_machines,
                                         const std::vector<nlohmann::json>& metalsync_clusters,
                                         const std::vector<nlohmann::json>& machines,
                                         const std::vector<nlohmann::json>& clusters);

// A write to the management cluster, done by the Kubernetes worker.
struct KubeWrite {
    enum class Op {
        set_finalizers,  // merge patch of metadata.finalizers, guarded by resourceVersion
        set_provider_id, // merge patch of spec.providerID
        apply_status,    // server-side apply of .status (the status subresource), field manager metalsync-provider
    };
    Op op = Op::apply_status;
    std::string kind;  // MetalsyncMachine | MetalsyncCluster
    std::string namespace_;
    std::string name;
    std::string uid;               // the object written must still be this one
    std::string resource_version;  // set_finalizers: the version the list was computed from
    nlohmann::json value;          // the finalizers array, the providerID string, or the status object

    [[nodiscard]] std::string describe() const;
};

// What one machine's pass asks, grouped so that a refused store write stops
// the rest of that machine's pass (never Ironic or the status before the
// journal).
struct MachinePlan {
    MachineRef ref;
    std::string cluster;
    ClaimDecision decision;
    std::optional<ClaimRecord> put;  // upsert into the store first
    bool drop = false;               // delete the store's record last
    std::vector<Action> actions;     // Ironic, through the executor
    std::vector<KubeWrite> writes;   // the MetalsyncMachine
    bool synthetic = false;          // a claim whose machine is gone from the cluster: no object to write
};

struct ProviderPlan {
    std::vector<MachinePlan> machines;
    std::vector<KubeWrite> cluster_writes;
};

struct ProviderInputs {
    const ProviderView& view;
    const std::vector<PoolNode>& nodes;
    const ClaimTable& claims;
    const DesiredState& desired;  // BMC addresses for the executor's per-BMC limit
    std::string instance;
    std::string now;  // RFC 3339, for condition transition times
};

[[nodiscard]] ProviderPlan plan_provider(const ProviderInputs& inputs);

// Node name -> why the node planner leaves its provisioning to the provider.
[[nodiscard]] std::map<std::string, std::string> claim_holds(const std::vector<PoolNode>& nodes,
                                                             const ClaimTable& claims);

// "2026-12-03T01:02:03Z".
[[nodiscard]] std::string rfc3339(double unix_seconds);

} // namespace metalsync::provider
