#include "reconcilers/provider/claim.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include "reconcilers/node_planner.hpp"
#include "sources/desired_state.hpp"
#include "sources/yaml_reader.hpp"

namespace metalsync::provider {

namespace {

// States in which the node still runs (or may run) the machine's image; Ironic
// accepts undeploy (the "deleted" verb) from these.
const std::set<std::string> k_running_states = {"active", "deploy failed", "wait call-back", "error",
                                                "rescue", "rescue failed"};
// A deploy in progress: wait for it, and keep the node held.
const std::set<std::string> k_deploying_states = {"deploying", "wait call-back"};
// Cluster API's MachineStatusError values (deprecated v1beta1 failureReason).
constexpr const char* k_create_error = "CreateError";
constexpr const char* k_update_error = "UpdateError";
constexpr const char* k_invalid_configuration = "InvalidConfiguration";

const PoolNode* find_node(const std::vector<PoolNode>& nodes, const std::string& name)
{
    auto it = std::find_if(nodes.begin(), nodes.end(), [&](const PoolNode& n) { return n.name == name; });
    return it == nodes.end() ? nullptr : &*it;
}

std::string join(const std::vector<std::string>& parts, const char* separator)
{
    std::string out;
    for (const auto& p : parts) {
        out += (out.empty() ? "" : separator) + p;
    }
    return out;
}

// Why Git wants this claimed node elsewhere; empty when it still offers it.
std::string git_divergence(const PoolNode& node)
{
    if (!node.in_git) {
        return "Git no longer declares node " + node.name;
    }
    if (pool_of(node).empty()) {
        return "Git removed node " + node.name + " from its pool (label " + k_pool_label + ")";
    }
    if (!node.goal_is_available) {
        return "Git gives node " + node.name + " another provisionState than the pool's available";
    }
    return "";
}

enum class Source { ironic, store, status };

const char* to_string(Source s)
{
    switch (s) {
    case Source::ironic: return "Ironic's instance_uuid";
    case Source::store: return "metalsync's store";
    case Source::status: return "status.node";
    }
    return "?";
}

// The three places made to agree. `node` is the machine's node after the
// rules; `writes` repair the others; `conflicts` say what disagreed.
struct Resolution {
    std::string node;
    ClaimWrites writes;
    std::vector<std::string> conflicts;
    bool ambiguous = false;  // Ironic gives several nodes to the machine
};

Resolution resolve(const ClaimInputs& in)
{
    Resolution res;
    const Machine& m = in.machine;
    const std::string& uid = m.ref.uid;
    const ClaimRecord* rec = in.claims.by_machine(uid);
    // Releasing, or about to: an empty instance_uuid and a stale status are
    // the release's own doing (Ironic clears instance_uuid at tear-down), and
    // a deleted machine is never given its node again.
    const bool releasing = m.deleting || (rec != nullptr && rec->phase == ClaimPhase::releasing);

    std::vector<std::string> in_ironic;
    for (const auto& n : in.nodes) {
        if (!uid.empty() && n.instance_uuid == uid) {
            in_ironic.push_back(n.name);
        }
    }
    std::sort(in_ironic.begin(), in_ironic.end());
    if (in_ironic.size() > 1) {
        // Which one runs the machine cannot be told from here; clearing either
        // could strand a running node. A person decides.
        res.ambiguous = true;
        res.conflicts.push_back("Ironic gives nodes " + join(in_ironic, ", ") + " to this machine (instance_uuid " +
                                uid + "); clear the instance_uuid of the wrong one");
        return res;
    }

    std::vector<std::pair<Source, std::string>> candidates;
    if (!in_ironic.empty()) candidates.emplace_back(Source::ironic, in_ironic.front());
    if (rec != nullptr) candidates.emplace_back(Source::store, rec->node);
    if (!m.status_node.empty()) candidates.emplace_back(Source::status, m.status_node);

    std::optional<Source> winner;
    for (const auto& [source, name] : candidates) {
        const PoolNode* n = find_node(in.nodes, name);
        if (source != Source::ironic && n != nullptr && !n->instance_uuid.empty() && n->instance_uuid != uid) {
            const ClaimRecord* owner = in.claims.by_machine(n->instance_uuid);
            res.conflicts.push_back(std::string(to_string(source)) + " says node " + name +
                                    ", but Ironic gives it to " +
                                    (owner != nullptr ? owner->machine.key() : "instance " + n->instance_uuid) +
                                    " (Ironic wins)");
            continue;
        }
        if (source == Source::status) {
            const ClaimRecord* owner = in.claims.by_node(name);
            if (owner != nullptr && owner->machine.uid != uid) {
                res.conflicts.push_back("status.node says node " + name + ", but metalsync's store gives it to " +
                                        owner->machine.key() + " (the store wins)");
                continue;
            }
        }
        if (!winner) {
            winner = source;
            res.node = name;
        } else if (name != res.node) {
            res.conflicts.push_back(std::string(to_string(source)) + " says node " + name + ", " +
                                    to_string(*winner) + " says " + res.node + " (" + to_string(*winner) +
                                    " wins)");
        }
    }

    if (res.node.empty()) {
        // Every place that named a node was wrong: drop what is ours to drop.
        res.writes.drop_store = rec != nullptr;
        res.writes.clear_status_node = !m.status_node.empty();
        return res;
    }
    if (rec == nullptr || rec->node != res.node) {
        res.writes.store = true;
        // A deleted machine's restored record says releasing at once: its
        // node is never claimed again, only given back.
        res.writes.phase = m.deleting ? ClaimPhase::releasing : ClaimPhase::claimed;
    }
    const PoolNode* n = find_node(in.nodes, res.node);
    if (!releasing && n != nullptr && n->observed() && n->instance_uuid.empty()) {
        res.writes.instance_uuid = true;
    }
    if (!releasing && m.status_node != res.node) {
        res.writes.status_node = true;
    }
    return res;
}

ClaimDecision decide(ClaimStep step, std::string node, const char* reason, std::string message)
{
    ClaimDecision d;
    d.step = step;
    d.node = std::move(node);
    d.reason = reason;
    d.message = std::move(message);
    return d;
}

ClaimDecision failed(std::string node, const char* reason, const char* failure_reason, std::string message)
{
    ClaimDecision d = decide(ClaimStep::failed, std::move(node), reason, std::move(message));
    d.failure_reason = failure_reason;
    return d;
}

DeployRequest deploy_request(const ClaimInputs& in, const std::string& node)
{
    // The image's Ironic fields are built as the node planner builds a Git
    // node's, so both checksum spellings behave alike.
    NodeSpec spec;
    spec.name = node;
    ImageSpec image;
    image.source = in.machine.spec.image.url;
    image.checksum = in.machine.spec.image.checksum;
    if (image.source.empty()) {
        // No image in the template: the node's own, from Git.
        if (const PoolNode* n = find_node(in.nodes, node)) {
            image.source = n->image_url;
            image.checksum = n->image_checksum;
        }
    }
    spec.image = image;
    DeployRequest r;
    r.instance_info = desired_instance_info(spec);
    if (!in.machine.spec.image.disk_format.empty()) {
        r.instance_info["image_disk_format"] = in.machine.spec.image.disk_format;
    }
    const Machine& m = in.machine;
    nlohmann::json meta = nlohmann::json::object();
    meta["uuid"] = m.ref.uid;
    meta["local-hostname"] = m.ref.name;
    meta["name"] = m.ref.name;
    meta["providerid"] = provider_id(in.instance, node);
    r.configdrive["meta_data"] = std::move(meta);
    r.configdrive["user_data"] = in.bootstrap ? in.bootstrap->value : "";
    r.bootstrap_format = in.bootstrap ? in.bootstrap->format : "";
    return r;
}

// The machine is being deleted, or its claim given up: undeploy, wait for
// Ironic to clean, clear instance_uuid, forget.
ClaimDecision release_flow(const ClaimInputs& in, const std::string& name, const ClaimRecord* rec)
{
    const Machine& m = in.machine;
    const PoolNode* n = find_node(in.nodes, name);
    const bool deleting = m.deleting;
    ClaimDecision d;
    if (n == nullptr || !n->observed()) {
        d = decide(ClaimStep::forget, name, k_reason_released,
                   "node " + name + " is not in Ironic: nothing to release; claim forgotten");
        d.writes.drop_store = rec != nullptr;
        d.writes.clear_status_node = !m.status_node.empty();
        d.remove_finalizer = deleting;
    } else if (n->maintenance) {
        d = decide(ClaimStep::wait, name, k_reason_node_in_maintenance,
                   "releasing node " + name + " waits: it is in maintenance in Ironic" +
                       (n->last_error.empty() ? "" : " (" + n->last_error + ")"));
    } else if (k_running_states.contains(n->provision_state)) {
        d = decide(ClaimStep::release, name, k_reason_releasing,
                   "undeploying node " + name + (m.spec.automated_cleaning ? ", then cleaning it" : " without cleaning") +
                       " (from " + n->provision_state + ")");
        d.automated_clean = m.spec.automated_cleaning;
    } else if (n->provision_state == k_pool_resting_state && n->instance_uuid == m.ref.uid) {
        d = decide(ClaimStep::unclaim, name, k_reason_releasing,
                   "node " + name + " is available again: clearing its instance_uuid");
        d.writes.clear_instance_uuid_on = name;
    } else if (n->provision_state == k_pool_resting_state) {
        d = decide(ClaimStep::forget, name, k_reason_released,
                   "node " + name + " is back in its pool" + (deleting ? "; the machine can go" : ""));
        d.writes.drop_store = rec != nullptr;
        d.writes.clear_status_node = !m.status_node.empty();
        d.remove_finalizer = deleting;
    } else {
        // Tear-down, cleaning, or a failure on the way back: the node planner
        // brings the node to Git's `available` (node_hold no longer holds it).
        d = decide(ClaimStep::wait, name, k_reason_releasing,
                   "releasing node " + name + ": " + n->provision_state +
                       (n->last_error.empty() ? "" : " (" + n->last_error + ")"));
    }
    // The journal first: the record says releasing before Ironic is asked to
    // undeploy, so a crash never turns a release back into a claim.
    if ((rec == nullptr || rec->phase != ClaimPhase::releasing) && d.step != ClaimStep::forget) {
        d.writes.store = true;
        d.writes.phase = ClaimPhase::releasing;
    }
    if (n != nullptr) {
        d.failure_domain = failure_domain(*n);
    }
    return d;
}

ClaimDecision no_claim_flow(const ClaimInputs& in)
{
    const Machine& m = in.machine;
    if (m.deleting) {
        ClaimDecision d = decide(ClaimStep::forget, "", k_reason_released, "no node was claimed; the machine can go");
        d.remove_finalizer = true;
        return d;
    }
    if (auto valid = validate_machine_spec(m.spec); !valid) {
        return failed("", k_reason_invalid_configuration, k_invalid_configuration, valid.error());
    }
    if (!m.cluster_infrastructure_ready) {
        return decide(ClaimStep::wait, "", k_reason_waiting_for_cluster,
                      "waiting for the cluster's infrastructure (MetalsyncCluster) to be provisioned");
    }
    if (!in.bootstrap) {
        return decide(ClaimStep::wait, "", k_reason_waiting_for_bootstrap,
                      "waiting for the bootstrap data (the Machine's spec.bootstrap.dataSecretName); "
                      "no node is claimed before it exists");
    }
    if (m.provisioned || !m.spec.provider_id.empty()) {
        // Choosing again would put a provisioned machine on a fresh node
        // behind Cluster API's back.
        return failed("", k_reason_node_lost, k_update_error,
                      "the machine was provisioned (" + (m.spec.provider_id.empty() ? "no providerID" : m.spec.provider_id) +
                          ") but no claim remains in metalsync's store, its status or Ironic; delete the Machine to "
                          "replace it");
    }
    MachineRequest req{m.ref, m.cluster, m.spec.host_selector, wanted_failure_domain(m), m.spec.image.url.empty()};
    auto choice = choose_node(req, in.nodes, in.claims);
    if (!choice) {
        return failed("", k_reason_invalid_configuration, k_invalid_configuration, choice.error());
    }
    if (!choice->node) {
        return decide(ClaimStep::wait, "", k_reason_no_free_node, choice->message);
    }
    ClaimDecision d = decide(ClaimStep::claim, *choice->node, k_reason_node_claimed, "claiming node " + choice->message);
    d.writes.store = true;
    d.writes.phase = ClaimPhase::claimed;
    d.writes.instance_uuid = true;
    d.writes.status_node = true;
    d.failure_domain = choice->failure_domain;
    return d;
}

ClaimDecision claimed_flow(const ClaimInputs& in, const std::string& name, const ClaimRecord* rec)
{
    const Machine& m = in.machine;
    const PoolNode* n = find_node(in.nodes, name);
    if (n == nullptr || !n->observed()) {
        return decide(ClaimStep::wait, name, k_reason_waiting_for_node,
                      "node " + name + " is not in Ironic" +
                          (n != nullptr && n->in_git ? " yet: the node planner enrolls it" : ""));
    }
    const bool was_provisioned = m.provisioned || !m.spec.provider_id.empty();
    const std::string hold = git_divergence(*n);
    const std::string& state = n->provision_state;
    ClaimDecision d;
    if (state == k_pool_resting_state) {
        if (was_provisioned) {
            d = failed(name, k_reason_node_lost, k_update_error,
                       "node " + name + " is available again: it was undeployed outside metalsync; delete the "
                       "Machine to replace it");
        } else if (!hold.empty()) {
            // Nothing runs on the node yet: Git may have it back. The release
            // flow clears instance_uuid and forgets; the next pass chooses anew.
            d = release_flow(in, name, rec);
            d.reason = k_reason_node_left_pool;
            d.message = hold + " before it was deployed: the claim is given up, another node will be chosen. " +
                        d.message;
            return d;
        } else if (n->maintenance) {
            d = decide(ClaimStep::wait, name, k_reason_node_in_maintenance,
                       "node " + name + " is in maintenance in Ironic; deploying waits" +
                           (n->last_error.empty() ? "" : " (" + n->last_error + ")"));
        } else if (!in.bootstrap) {
            d = decide(ClaimStep::wait, name, k_reason_waiting_for_bootstrap,
                       "node " + name + " is claimed; waiting for the bootstrap data to deploy it");
        } else if (auto valid = validate_machine_spec(m.spec); !valid) {
            d = failed(name, k_reason_invalid_configuration, k_invalid_configuration, valid.error());
        } else if (m.spec.image.url.empty() && n->image_url.empty()) {
            d = decide(ClaimStep::wait, name, k_reason_invalid_configuration,
                       "node " + name + " has no image in Git and the machine's template names none: give one "
                       "either place");
        } else {
            d = decide(ClaimStep::deploy, name, k_reason_deploying,
                       "deploying " + (m.spec.image.url.empty() ? n->image_url + " (the node's own image)"
                                                                : m.spec.image.url) +
                           " on node " + name);
            d.deploy = deploy_request(in, name);
        }
    } else if (k_deploying_states.contains(state)) {
        d = decide(ClaimStep::wait, name, k_reason_deploying, "node " + name + " is deploying (" + state + ")");
    } else if (state == "active") {
        const std::string want = provider_id(in.instance, name);
        if (!m.spec.provider_id.empty() && m.spec.provider_id != want) {
            d = decide(ClaimStep::conflict, name, k_reason_claim_conflict,
                       "spec.providerID is " + m.spec.provider_id + " but the machine's node is " + name + " (" +
                           want + "); a person must look");
            d.conflict = d.message;
        } else if (m.spec.provider_id.empty() || !m.provisioned) {
            d = decide(ClaimStep::report_provisioned, name, k_reason_provisioned, "node " + name + " is deployed");
            d.provider_id = want;
            d.addresses.push_back({"Hostname", m.ref.name});
            for (const auto& a : n->addresses) {
                if (std::find(d.addresses.begin(), d.addresses.end(), a) == d.addresses.end()) {
                    d.addresses.push_back(a);
                }
            }
        } else if (!hold.empty()) {
            d = decide(ClaimStep::held_by_claim, name, k_reason_held_by_claim,
                       hold + ", but it runs this machine: it is held until the machine is deleted, then released");
            d.provider_id = want;
        } else {
            d = decide(ClaimStep::in_sync, name, k_reason_provisioned, "running on node " + name);
            d.provider_id = want;
        }
    } else if (state == "deploy failed") {
        d = failed(name, k_reason_deploy_failed, k_create_error,
                   "deploying node " + name + " failed: " +
                       (n->last_error.empty() ? "no error reported by Ironic" : n->last_error) +
                       "; delete the Machine to release the node");
    } else {
        d = decide(ClaimStep::wait, name, k_reason_waiting_for_node,
                   "node " + name + " is " + state + (n->last_error.empty() ? "" : " (" + n->last_error + ")"));
    }
    d.git_hold = hold;
    d.failure_domain = failure_domain(*n);
    return d;
}

} // namespace

std::string wanted_failure_domain(const Machine& machine)
{
    return machine.machine_failure_domain.empty() ? machine.spec.failure_domain : machine.machine_failure_domain;
}

std::expected<void, std::string> validate_machine_spec(const MachineSpec& spec)
{
    if (auto valid = validate_selector(spec.host_selector); !valid) {
        return std::unexpected("invalid hostSelector: " + valid.error());
    }
    // The same rules as a Node's spec.image in Git (sources/yaml_reader's
    // checks behind `metalsync validate`), so one image works in both.
    const auto& image = spec.image;
    if (image.url.empty() && image.checksum.empty() && image.disk_format.empty()) {
        return {};  // each node's own image from Git
    }
    if (!is_url(image.url)) {
        return std::unexpected("image.url must be an http://, https:// or file:// URL, not \"" + image.url + "\"");
    }
    if (!is_checksum(image.checksum)) {
        return std::unexpected("image.checksum must be sha256:<64 hex>, sha512:<128 hex>, md5:<32 hex> (lower case) "
                               "or an http(s) URL of a checksum file");
    }
    static const std::set<std::string> formats = {"", "raw", "qcow2", "vdi", "vmdk", "live-iso"};
    if (!formats.contains(image.disk_format)) {
        return std::unexpected("image.diskFormat \"" + image.disk_format + "\" is not raw, qcow2, vdi, vmdk or live-iso");
    }
    return {};
}

std::string provider_id(const std::string& instance, const std::string& node)
{
    return std::string(k_provider_id_scheme) + instance + "/" + node;
}

const char* to_string(ClaimStep step)
{
    switch (step) {
    case ClaimStep::wait: return "wait";
    case ClaimStep::claim: return "claim";
    case ClaimStep::adopt: return "adopt";
    case ClaimStep::deploy: return "deploy";
    case ClaimStep::report_provisioned: return "report-provisioned";
    case ClaimStep::in_sync: return "in-sync";
    case ClaimStep::held_by_claim: return "held-by-claim";
    case ClaimStep::release: return "release";
    case ClaimStep::unclaim: return "unclaim";
    case ClaimStep::forget: return "forget";
    case ClaimStep::conflict: return "conflict";
    case ClaimStep::failed: return "failed";
    }
    return "?";
}

ClaimDecision reconcile_claim(const ClaimInputs& in)
{
    const Machine& m = in.machine;
    // Paused: hands off everything, deletion included (contracts/infra-machine.md,
    // "InfraMachine: pausing"); only the Paused condition changes.
    if (m.paused) {
        return decide(ClaimStep::wait, m.status_node, k_reason_paused,
                      "reconciliation is paused (the Cluster's spec.paused or the " + std::string(k_paused_annotation) +
                          " annotation)");
    }
    Resolution res = resolve(in);
    const std::string conflict = join(res.conflicts, "; ");
    if (res.ambiguous) {
        ClaimDecision d = decide(ClaimStep::conflict, "", k_reason_claim_conflict, conflict);
        d.conflict = conflict;
        return d;
    }
    if (res.writes.any()) {
        const bool restoring = !res.node.empty();
        ClaimDecision d = decide(restoring ? ClaimStep::adopt : ClaimStep::conflict, res.node,
                                 conflict.empty() ? k_reason_claim_restored : k_reason_claim_conflict, "");
        std::vector<std::string> places;
        if (res.writes.store) places.emplace_back("metalsync's store");
        if (res.writes.instance_uuid) places.emplace_back("Ironic's instance_uuid");
        if (res.writes.status_node) places.emplace_back("status.node");
        d.message = restoring ? "claim on node " + res.node + " restored in " + join(places, ", ")
                              : "no node is this machine's after all; stale claim dropped";
        if (!conflict.empty()) {
            d.message += ": " + conflict;
        }
        d.writes = res.writes;
        d.conflict = conflict;
        if (const PoolNode* n = find_node(in.nodes, res.node)) {
            d.failure_domain = failure_domain(*n);
        }
        return d;
    }
    const ClaimRecord* rec = in.claims.by_machine(m.ref.uid);
    ClaimDecision d;
    if (res.node.empty()) {
        d = no_claim_flow(in);
    } else if (m.deleting || (rec != nullptr && rec->phase == ClaimPhase::releasing)) {
        d = release_flow(in, res.node, rec);
    } else {
        d = claimed_flow(in, res.node, rec);
    }
    d.conflict = conflict;
    return d;
}

std::vector<ClaimDecision> reconcile_claims(const std::vector<MachineInput>& machines,
                                            const std::vector<PoolNode>& nodes, const ClaimTable& claims,
                                            const std::string& instance)
{
    std::vector<std::size_t> order(machines.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
        order[i] = i;
    }
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return machines[a].machine.ref.key() < machines[b].machine.ref.key();
    });
    ClaimTable working = claims;
    std::vector<ClaimDecision> decisions(machines.size());
    for (std::size_t i : order) {
        const auto& mi = machines[i];
        ClaimDecision d = reconcile_claim({mi.machine, mi.bootstrap, nodes, working, instance});
        if (d.writes.store) {
            // A refused put (the node is another machine's record until that
            // machine's own decision drops it) is retried on the next pass.
            (void)working.put({d.node, mi.machine.ref, mi.machine.cluster, d.writes.phase});
        }
        if (d.writes.drop_store) {
            working.erase_machine(mi.machine.ref.uid);
        }
        decisions[i] = std::move(d);
    }
    return decisions;
}

std::optional<NodeHold> node_hold(const PoolNode& node, const ClaimTable& claims)
{
    NodeHold hold;
    const std::string diverges = git_divergence(node);
    hold.git_diverges = !diverges.empty();
    if (const ClaimRecord* rec = claims.by_node(node.name)) {
        hold.machine = rec->machine.key();
        if (rec->phase == ClaimPhase::releasing && !k_running_states.contains(node.provision_state) &&
            !k_deploying_states.contains(node.provision_state) && node.provision_state != "deleting") {
            // Undeployed: nothing of the machine runs any more, and Git's goal
            // (the pool's available) brings the node back through cleaning.
            return std::nullopt;
        }
        hold.message = std::string(rec->phase == ClaimPhase::releasing ? "being released by " : "claimed by ") +
                       "MetalsyncMachine " + rec->machine.key() +
                       (rec->cluster.empty() ? "" : " (cluster " + rec->cluster + ")");
    } else if (!node.instance_uuid.empty() && !pool_of(node).empty()) {
        hold.machine = node.instance_uuid;
        hold.message = "claimed in Ironic by instance " + node.instance_uuid + ", which metalsync's store does not know";
    } else {
        return std::nullopt;
    }
    if (hold.git_diverges) {
        hold.message += "; " + diverges + ": that waits until the machine is deleted and the node released";
    }
    return hold;
}

} // namespace metalsync::provider
