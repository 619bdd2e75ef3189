#pragma once

// Pools of Git-declared nodes for metalsync's Cluster API infrastructure
// provider, and the choice of a node for a MetalsyncMachine. Pure: no clock,
// no network, no database.
//
// THE POOL CONVENTION
//
// A Node in Git is in a pool when
//   - it carries the label `metalsync.dev/pool: <pool-name>` in
//     metadata.labels, and
//   - Git keeps it at `provisionState: available`, the pool's resting state.
// Git declares the pool; the provider deploys pool nodes for machines and
// gives them back. While a node is claimed, Git's `available` is not a goal
// the node planner pursues (it would undeploy a running machine): the claim
// holds the node until the machine is deleted and the node is available again.
//
// A MetalsyncMachine's spec.hostSelector is a Kubernetes label selector over
// the labels of the pool nodes: `matchLabels: {metalsync.dev/pool: workers}`
// names a pool, and any other label narrows it (`gpu: "true"`, `rack: r1`).
// Nodes without the pool label are never candidates, whatever the selector
// says: an empty selector matches every pool node, not every node of the site.
//
// The failure domain of a node is the value of its label
// `topology.kubernetes.io/zone` (the well-known label Kubernetes nodes carry);
// a node without it has no failure domain. Cluster API's Metal3 provider
// (metal3-io/metal3-docs design/fd-support-kcp.md) uses a label on the host the
// same way, `infrastructure.cluster.x-k8s.io/failure-domain`; metalsync uses
// the zone label so the same value can be passed on to the kubelet.
//
// A node is FREE for a machine when it is in a pool, matches the machine's
// selector (and failure domain, if the machine names one), is claimed by no
// machine (neither in metalsync's claim table nor by an instance_uuid in
// Ironic), is observed `available` in Ironic and is not in maintenance.

#include <cstddef>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace metalsync::provider {

inline constexpr const char* k_pool_label = "metalsync.dev/pool";
inline constexpr const char* k_zone_label = "topology.kubernetes.io/zone";
inline constexpr const char* k_pool_resting_state = "available";  // Ironic's word and Git's goal

// metav1.LabelSelectorOperator.
enum class SelectorOperator { in, not_in, exists, does_not_exist };

[[nodiscard]] const char* to_string(SelectorOperator op);
// Exactly Kubernetes' spellings (In, NotIn, Exists, DoesNotExist); the CRD's
// enum refuses others, so a lower-case `in` is an error here too.
[[nodiscard]] std::expected<SelectorOperator, std::string> parse_selector_operator(std::string_view text);

struct SelectorRequirement {
    std::string key;
    SelectorOperator op = SelectorOperator::exists;
    std::vector<std::string> values;
};

// metav1.LabelSelector: matchLabels AND every matchExpression.
struct HostSelector {
    std::map<std::string, std::string> match_labels;
    std::vector<SelectorRequirement> match_expressions;
};

// What Kubernetes refuses in a selector (LabelSelectorAsSelector): In and
// NotIn need values, Exists and DoesNotExist take none, keys are not empty.
[[nodiscard]] std::expected<void, std::string> validate_selector(const HostSelector& selector);

// Kubernetes label selector semantics: every matchLabels pair present with
// that value; In: the label is present with one of the values; NotIn: absent,
// or present with none of them; Exists: present; DoesNotExist: absent. An
// empty selector matches everything. An invalid selector matches nothing, so
// a mistake can never widen a choice.
[[nodiscard]] bool selector_matches(const HostSelector& selector, const std::map<std::string, std::string>& labels);

// "{metalsync.dev/pool=workers, gpu notin (a,b), !old}", for messages.
[[nodiscard]] std::string describe_selector(const HostSelector& selector);

struct MachineAddress {
    std::string type;     // Hostname | ExternalIP | InternalIP | ExternalDNS | InternalDNS
    std::string address;

    bool operator==(const MachineAddress&) const = default;
};

// A node as the provider sees it: Git's labels and goal, Ironic's observation.
// The wiring passes every node known to Git or to Ironic.
struct PoolNode {
    std::string name;
    std::map<std::string, std::string> labels;  // Git's metadata.labels (last known when no longer in Git)
    std::string provision_state;                // observed in Ironic; empty when Ironic does not know the node
    std::string instance_uuid;                  // observed; empty if none
    bool maintenance = false;                   // observed
    bool in_git = true;
    bool goal_is_available = true;              // Git's provisionState is `available`
    std::string last_error;                     // observed
    std::vector<MachineAddress> addresses;      // known addresses of the node (Git or inspection); may be empty
    std::string image_url;                      // Git's spec.image (the Node's or its class's); empty: none
    std::string image_checksum;

    [[nodiscard]] bool observed() const { return !provision_state.empty(); }
};

// In a pool by Git's word: pool label, still in Git, goal available.
[[nodiscard]] bool in_pool(const PoolNode& node);
[[nodiscard]] std::string pool_of(const PoolNode& node);        // empty when none
[[nodiscard]] std::string failure_domain(const PoolNode& node);  // empty when none

// The failure domains of the pool nodes, sorted and unique: what
// MetalsyncCluster.status.failureDomains lists.
[[nodiscard]] std::vector<std::string> failure_domains(const std::vector<PoolNode>& nodes);

struct MachineRef {
    std::string namespace_;
    std::string name;
    std::string uid;

    [[nodiscard]] std::string key() const { return namespace_ + "/" + name; }
    bool operator==(const MachineRef&) const = default;
};

enum class ClaimPhase {
    claimed,    // the node is the machine's: recorded, then instance_uuid set, then deployed
    releasing,  // being given back: undeploy, instance_uuid cleared, then the record is deleted
};

[[nodiscard]] const char* to_string(ClaimPhase phase);
[[nodiscard]] std::expected<ClaimPhase, std::string> parse_claim_phase(std::string_view text);

// One claim as metalsync's store keeps it (the journal: written before any
// Ironic action).
struct ClaimRecord {
    std::string node;
    MachineRef machine;
    std::string cluster;  // the machine's cluster.x-k8s.io/cluster-name
    ClaimPhase phase = ClaimPhase::claimed;

    bool operator==(const ClaimRecord&) const = default;
};

// The store's claims, indexed both ways. One node has at most one machine and
// one machine at most one node: `put` refuses anything else, so no caller can
// give a node to two machines by mistake (the store table should carry the
// same two UNIQUE constraints).
class ClaimTable {
public:
    // Adds or replaces the record of record.machine.uid. Refused when the node
    // is claimed by another machine (the table unchanged).
    std::expected<void, std::string> put(const ClaimRecord& record);
    // Removes the machine's record; false when it had none.
    bool erase_machine(const std::string& uid);

    [[nodiscard]] const ClaimRecord* by_node(const std::string& node) const;
    [[nodiscard]] const ClaimRecord* by_machine(const std::string& uid) const;
    [[nodiscard]] const std::map<std::string, ClaimRecord>& records() const { return m_by_node; }  // by node name
    [[nodiscard]] std::size_t size() const { return m_by_node.size(); }

private:
    std::map<std::string, ClaimRecord> m_by_node;
    std::map<std::string, std::string> m_node_by_uid;
};

// What a machine asks of the pool.
struct MachineRequest {
    MachineRef machine;
    std::string cluster;         // to spread the cluster's machines across failure domains
    HostSelector selector;
    std::string failure_domain;  // the Machine's failure domain; empty: any
    bool needs_node_image = false;  // the machine names no image: only nodes with their own image in Git
};

// A node that matches but is not free, and why ("claimed by default/w-1",
// "cleaning", "in maintenance", ...).
struct NotFree {
    std::string node;
    std::string why;       // for people
    std::string category;  // for counting: claimed, maintenance, not in Git, not enrolled, or the provision state
};

struct ChoiceResult {
    std::optional<std::string> node;  // the node chosen; empty when nothing is free
    std::string failure_domain;       // of the chosen node
    bool already_claimed = false;     // the node was already this machine's (idempotent choice)
    std::size_t matching = 0;         // pool nodes matching the selector (and failure domain)
    std::size_t free = 0;
    std::size_t matching_elsewhere = 0;  // matching, but in another failure domain than the one asked for
    std::vector<NotFree> not_free;       // by node name
    // "3 nodes match, 0 free (2 claimed, 1 cleaning): r1-node-03 claimed by
    // default/w-1, ..." when nothing is free; "r1-node-04 (rack1)" otherwise.
    std::string message;
};

// Chooses a free node for the machine, deterministically. CAPM3's chooseHost
// (metal3-io/cluster-api-provider-metal3 baremetal/metal3machine_manager.go)
// filters the same way (selector, no consumerRef, not paused or in error,
// state available/ready) but picks at random; here the same inputs give the
// same node, so `metalsync plan` can say which node a machine will get. With a failure
// domain, only nodes in it; without, the failure domain where the fewest nodes
// are claimed by machines of the same cluster (ties by domain name, nodes
// without a domain counting as the domain ""), then the first node by name. A
// node already claimed by this machine (table or instance_uuid) is returned as
// is. An invalid selector is an error (no node chosen).
[[nodiscard]] std::expected<ChoiceResult, std::string>
choose_node(const MachineRequest& request, const std::vector<PoolNode>& nodes, const ClaimTable& claims);

} // namespace metalsync::provider
