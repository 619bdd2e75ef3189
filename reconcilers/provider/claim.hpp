#pragma once

// The claim state machine of metalsync's Cluster API infrastructure provider.
// Pure: one MetalsyncMachine, the nodes and the store's claims in, the next
// step out. No clock, no network, no database.
//
// A CLAIM ties a MetalsyncMachine (namespace/name, uid) to one Node of a pool.
// It is written in three places, any of which can be lost on its own:
//   1. metalsync's store (the journal): written FIRST, before any Ironic action;
//   2. Ironic's instance_uuid on the node = the MetalsyncMachine's uid (as
//      baremetal-operator sets instance_uuid to its host object's uid,
//      metal3-io/baremetal-operator pkg/provisioner/ironic/ironic.go);
//   3. the MetalsyncMachine's status.node.
// When one or two are lost they are rebuilt from the others (step adopt).
// When they disagree, Ironic's instance_uuid wins over the store and the store
// over the status; the loser is rewritten or dropped and the conflict is
// reported loudly. No rule ever gives one node to two machines: a node whose
// instance_uuid names another machine is never ours, whatever our store or
// status says, and a node the store gives to another machine is never ours on
// the word of our status alone.
//
// LIFE OF A CLAIM (one step per call, as the node planner plans one step per
// node; the wiring applies it and calls again on the next pass):
//   wait (WaitingForBootstrapData, NoFreeNode ...) -> claim -> deploy ->
//   (wait while Ironic deploys) -> report_provisioned -> in_sync ...
//   machine deleted -> release (undeploy) -> (wait while Ironic cleans) ->
//   unclaim (clear instance_uuid) -> forget (finalizer may go).
//
// APPLYING A DECISION, in this order, so that a crash at any point leaves a
// state the next call finishes: (1) the store upsert (writes.store, with
// writes.phase), (2) Ironic (writes.instance_uuid / clear_instance_uuid_on,
// then deploy or undeploy), (3) the MetalsyncMachine (status.node, spec.
// providerID, the status built by machine_status), (4) the store deletion
// (writes.drop_store) and, with remove_finalizer, the finalizer.
//
// CALL ONLY ON A COMPLETE OBSERVATION of Ironic (ObservedState::complete),
// as the node planner: a claimed node missing from `nodes` is taken as gone
// from Ironic, and its claim is forgotten when the machine is deleted.
//
// GIT NEVER SILENTLY FIGHTS A CLAIM. A claimed node is the provider's: the
// node planner must not plan it (node_hold says so and why). A claimed node
// that Git removes or gives another goal is held and reported (held_by_claim),
// never undeployed under a running cluster; it is released when its machine
// is deleted, and Git's word applies from then on. Only a node claimed but not
// yet deployed is given up at once (nothing runs on it yet).

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/provider/pool.hpp"

namespace metalsync::provider {

inline constexpr const char* k_provider_id_scheme = "metalsync://";
// Cluster API's pause annotation (contracts/infra-machine.md, "InfraMachine: pausing").
inline constexpr const char* k_paused_annotation = "cluster.x-k8s.io/paused";

// Condition reasons (CamelCase, as metav1.Condition wants them). They are the
// Ready condition's reason, so `kubectl get metalsyncmachines` shows them.
inline constexpr const char* k_reason_paused = "Paused";
inline constexpr const char* k_reason_waiting_for_cluster = "WaitingForClusterInfrastructure";
inline constexpr const char* k_reason_waiting_for_bootstrap = "WaitingForBootstrapData";
inline constexpr const char* k_reason_no_free_node = "NoFreeNode";
inline constexpr const char* k_reason_node_claimed = "NodeClaimed";
inline constexpr const char* k_reason_claim_restored = "ClaimRestored";
inline constexpr const char* k_reason_claim_conflict = "ClaimConflict";
inline constexpr const char* k_reason_deploying = "Deploying";
inline constexpr const char* k_reason_provisioned = "Provisioned";
inline constexpr const char* k_reason_held_by_claim = "HeldByClaim";
inline constexpr const char* k_reason_node_left_pool = "NodeLeftPool";
inline constexpr const char* k_reason_waiting_for_node = "WaitingForNode";
inline constexpr const char* k_reason_node_in_maintenance = "NodeInMaintenance";
inline constexpr const char* k_reason_releasing = "Releasing";
inline constexpr const char* k_reason_released = "Released";
inline constexpr const char* k_reason_invalid_configuration = "InvalidConfiguration";
inline constexpr const char* k_reason_deploy_failed = "DeployFailed";
inline constexpr const char* k_reason_node_lost = "NodeLost";

struct MachineImage {
    std::string url;
    std::string checksum;     // sha256:<hex> | sha512:<hex> | md5:<hex> | http(s) URL of a checksum file
    std::string disk_format;  // raw | qcow2 | vdi | vmdk | live-iso | empty (Ironic detects it)
};

// MetalsyncMachine.spec (and MetalsyncMachineTemplate.spec.template.spec).
struct MachineSpec {
    HostSelector host_selector;
    MachineImage image;
    bool automated_cleaning = true;
    std::string provider_id;     // as read; metalsync writes it once the node is deployed
    std::string failure_domain;  // deprecated v1beta1 field: used when the Machine names none
};

// A MetalsyncMachine as read, with what the wiring learnt about its owners.
struct Machine {
    MachineRef ref;
    std::string cluster;                 // label cluster.x-k8s.io/cluster-name
    std::int64_t generation = 0;
    MachineSpec spec;
    bool deleting = false;               // metadata.deletionTimestamp is set
    std::string status_node;             // status.node as read
    bool provisioned = false;            // status.initialization.provisioned as read
    // Cluster spec.paused, or the cluster.x-k8s.io/paused annotation on this object.
    bool paused = false;
    // The owner Cluster's infrastructure is provisioned (contracts/infra-machine.md,
    // "Typical InfraMachine reconciliation workflow": exit until it is).
    bool cluster_infrastructure_ready = true;
    // The owner Machine's spec.failureDomain: authoritative under the v1beta2
    // contract (contracts/infra-machine.md, "InfraMachine: failure domain").
    std::string machine_failure_domain;
};

// The failure domain the machine must be placed in: the Machine's, else the
// deprecated MetalsyncMachine spec.failureDomain; empty: any.
[[nodiscard]] std::string wanted_failure_domain(const Machine& machine);

// The Machine's bootstrap data secret (spec.bootstrap.dataSecretName): keys
// `value` and `format` (cloud-config | ignition).
struct BootstrapData {
    std::string value;
    std::string format = "cloud-config";
};

// What the spec must hold before a node is claimed for it.
[[nodiscard]] std::expected<void, std::string> validate_machine_spec(const MachineSpec& spec);

// metalsync://<instance>/<node-name>: unique per metalsync instance and node,
// stable across redeploys of the same node; the kubelet gets it through the
// config drive's meta_data `providerid` (bare metal has no cloud provider to
// set the Node's spec.providerID). CAPM3 uses metal3://<namespace>/<host>/<machine>
// (baremetal/metal3machine_manager.go, SetDefaultProviderID); metalsync's nodes
// have no namespace, and the instance keeps two metalsyncs' nodes apart.
[[nodiscard]] std::string provider_id(const std::string& instance, const std::string& node);

struct ClaimInputs {
    Machine machine;
    std::optional<BootstrapData> bootstrap;  // nullopt until the bootstrap data secret is known and read
    const std::vector<PoolNode>& nodes;      // every node known to Git or Ironic
    const ClaimTable& claims;                // the store's claims (this machine's found by uid)
    std::string instance;                    // metalsync's instance name (providerID)
};

enum class ClaimStep {
    wait,                // nothing to do now: reason and message say why, for a person
    claim,               // a new claim on `node`: store, then instance_uuid, then status.node
    adopt,               // some places lost or stale: rewrite them as `writes` says
    deploy,              // deploy `node` with `deploy`
    report_provisioned,  // set spec.providerID and the status (addresses, provisioned)
    in_sync,             // deployed and reported: nothing to do
    held_by_claim,       // in_sync, but Git removed the node or changed its goal: held, reported
    release,             // undeploy `node` (cleaning unless automated_clean is false)
    unclaim,             // clear the node's instance_uuid: the node is available again
    forget,              // delete the store's claim, clear status.node; remove_finalizer when deleting
    conflict,            // the places disagree in a way no rule settles: a person must look
    failed,              // terminal for this machine (failure_reason): delete the Machine to replace it
};

[[nodiscard]] const char* to_string(ClaimStep step);

// Writes to the three places, applied in the order given in the header comment.
struct ClaimWrites {
    bool store = false;                  // upsert the store record machine -> node, with `phase`
    ClaimPhase phase = ClaimPhase::claimed;
    bool instance_uuid = false;          // set Ironic instance_uuid = machine uid on the node
    bool status_node = false;            // set status.node = node
    std::string clear_instance_uuid_on;  // clear Ironic instance_uuid on this node
    bool clear_status_node = false;
    bool drop_store = false;             // delete this machine's store record (last)

    [[nodiscard]] bool any() const
    {
        return store || instance_uuid || status_node || !clear_instance_uuid_on.empty() || clear_status_node ||
               drop_store;
    }
};

// What Ironic's deploy needs: the same shapes the node planner gives the
// action runner (params "instance_info" and "configdrive").
struct DeployRequest {
    nlohmann::json instance_info = nlohmann::json::object();
    nlohmann::json configdrive = nlohmann::json::object();  // {"user_data": ..., "meta_data": {...}}
    std::string bootstrap_format;                           // cloud-config | ignition
};

struct ClaimDecision {
    ClaimStep step = ClaimStep::wait;
    std::string node;     // the machine's node after this step; empty: none
    std::string reason;   // CamelCase, the Ready condition's reason
    std::string message;  // for a person: what happens, or what to do
    ClaimWrites writes;
    std::optional<DeployRequest> deploy;
    std::string provider_id;               // report_provisioned (and after)
    std::vector<MachineAddress> addresses; // report_provisioned
    std::string failure_domain;            // of the node, when known
    bool automated_clean = true;           // release: clean the disks (Ironic automated_clean)
    bool remove_finalizer = false;         // forget of a deleted machine
    std::string conflict;                  // non-empty: the three places disagreed (an event, loudly)
    std::string git_hold;                  // non-empty: Git wants the node elsewhere; held by this claim
    std::string failure_reason;            // failed: Cluster API MachineStatusError (CreateError ...)
};

[[nodiscard]] ClaimDecision reconcile_claim(const ClaimInputs& inputs);

// Every machine of a pass, in order of namespace/name, each seeing the claims
// the decisions before it made: two machines never choose the same free node
// in one pass. Decisions are returned in the order of `machines`.
struct MachineInput {
    Machine machine;
    std::optional<BootstrapData> bootstrap;
};
[[nodiscard]] std::vector<ClaimDecision> reconcile_claims(const std::vector<MachineInput>& machines,
                                                          const std::vector<PoolNode>& nodes,
                                                          const ClaimTable& claims, const std::string& instance);

// For the node planner: whether the provider holds this node, and why. Held:
// every node claimed in the store (until its release has undeployed it; from
// then Git's `available` brings it back through cleaning), and every pool node
// whose instance_uuid is set (a claim whose record may be lost). The message
// names the machine and, when Git wants something else for the node, says
// that Git's change waits for the machine's deletion.
struct NodeHold {
    std::string machine;  // namespace/name, or the instance_uuid when the store does not know it
    std::string message;
    bool git_diverges = false;  // Git removed the node, changed its goal or its pool label
};
[[nodiscard]] std::optional<NodeHold> node_hold(const PoolNode& node, const ClaimTable& claims);

} // namespace metalsync::provider
