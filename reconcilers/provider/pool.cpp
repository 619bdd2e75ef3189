#include "reconcilers/provider/pool.hpp"

#include <algorithm>
#include <set>
#include <utility>

namespace metalsync::provider {

namespace {

// How many not-free nodes a message names one by one; the rest are counted.
constexpr std::size_t k_listed_not_free = 8;

const std::string* label(const std::map<std::string, std::string>& labels, const std::string& key)
{
    auto it = labels.find(key);
    return it == labels.end() ? nullptr : &it->second;
}

bool contains(const std::vector<std::string>& values, const std::string& value)
{
    return std::find(values.begin(), values.end(), value) != values.end();
}

bool requirement_matches(const SelectorRequirement& r, const std::map<std::string, std::string>& labels)
{
    const std::string* value = label(labels, r.key);
    switch (r.op) {
    case SelectorOperator::in: return value != nullptr && contains(r.values, *value);
    case SelectorOperator::not_in: return value == nullptr || !contains(r.values, *value);
    case SelectorOperator::exists: return value != nullptr;
    case SelectorOperator::does_not_exist: return value == nullptr;
    }
    return false;
}

std::string plural(std::size_t n, const char* one, const char* many)
{
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

// Why a matching node is not free for `uid`; nullopt when it is.
std::optional<NotFree> not_free_reason(const PoolNode& node, const ClaimTable& claims, const std::string& uid)
{
    if (const ClaimRecord* rec = claims.by_node(node.name); rec != nullptr && rec->machine.uid != uid) {
        if (rec->phase == ClaimPhase::releasing) {
            return NotFree{node.name, "being released by " + rec->machine.key(), "releasing"};
        }
        return NotFree{node.name, "claimed by " + rec->machine.key(), "claimed"};
    }
    if (!node.instance_uuid.empty() && node.instance_uuid != uid) {
        // Ironic's instance_uuid is a claim even when metalsync's store does
        // not know it (another tool, or a store restored from an old backup).
        const ClaimRecord* owner = claims.by_machine(node.instance_uuid);
        return NotFree{node.name,
                       owner != nullptr ? "claimed by " + owner->machine.key()
                                        : "claimed in Ironic by instance " + node.instance_uuid,
                       "claimed"};
    }
    if (!node.in_git) {
        return NotFree{node.name, "removed from Git", "removed from Git"};
    }
    if (!node.goal_is_available) {
        return NotFree{node.name, "taken out of the pool in Git (provisionState is not available)",
                       "out of the pool in Git"};
    }
    if (!node.observed()) {
        return NotFree{node.name, "not enrolled in Ironic yet", "not enrolled"};
    }
    if (node.maintenance) {
        return NotFree{node.name, "in maintenance", "in maintenance"};
    }
    if (node.provision_state != k_pool_resting_state) {
        return NotFree{node.name, node.provision_state, node.provision_state};
    }
    return std::nullopt;
}

std::string nothing_free_message(const MachineRequest& request, const ChoiceResult& r, const ClaimTable& claims)
{
    std::string where = request.failure_domain.empty() ? "" : " in failure domain " + request.failure_domain;
    std::string msg;
    if (r.matching == 0) {
        msg = "no pool node" + where + " matches hostSelector " + describe_selector(request.selector);
    } else {
        msg = plural(r.matching, "node matches", "nodes match") + where + ", 0 free (";
        std::map<std::string, std::size_t> counts;
        for (const auto& nf : r.not_free) {
            ++counts[nf.category];
        }
        std::vector<std::pair<std::string, std::size_t>> ordered(counts.begin(), counts.end());
        std::stable_sort(ordered.begin(), ordered.end(),
                         [](const auto& a, const auto& b) { return a.second > b.second; });
        for (std::size_t i = 0; i < ordered.size(); ++i) {
            msg += (i == 0 ? "" : ", ") + std::to_string(ordered[i].second) + " " + ordered[i].first;
        }
        msg += "): ";
        for (std::size_t i = 0; i < r.not_free.size() && i < k_listed_not_free; ++i) {
            msg += (i == 0 ? "" : "; ") + r.not_free[i].node + " " + r.not_free[i].why;
        }
        if (r.not_free.size() > k_listed_not_free) {
            msg += "; and " + std::to_string(r.not_free.size() - k_listed_not_free) + " more";
        }
        // A rolling update with maxSurge >= 1 creates the new machine before
        // deleting an old one: with every node held by the cluster itself it
        // waits for ever. Say so, with the two ways out.
        bool all_by_cluster = !request.cluster.empty();
        for (const auto& nf : r.not_free) {
            const ClaimRecord* rec = claims.by_node(nf.node);
            if (rec == nullptr || rec->cluster != request.cluster || nf.category != "claimed") {
                all_by_cluster = false;
                break;
            }
        }
        if (all_by_cluster) {
            msg += "; every matching node runs a machine of cluster " + request.cluster +
                   ": a rolling update needs a spare node (add one to the pool in Git, or use maxSurge: 0 so an "
                   "old machine is deleted first)";
        }
    }
    if (r.matching_elsewhere > 0) {
        msg += " (" + plural(r.matching_elsewhere, "more matches", "more match") + " in other failure domains)";
    }
    return msg;
}

} // namespace

const char* to_string(SelectorOperator op)
{
    switch (op) {
    case SelectorOperator::in: return "In";
    case SelectorOperator::not_in: return "NotIn";
    case SelectorOperator::exists: return "Exists";
    case SelectorOperator::does_not_exist: return "DoesNotExist";
    }
    return "?";
}

std::expected<SelectorOperator, std::string> parse_selector_operator(std::string_view text)
{
    for (auto op : {SelectorOperator::in, SelectorOperator::not_in, SelectorOperator::exists,
                    SelectorOperator::does_not_exist}) {
        if (text == to_string(op)) {
            return op;
        }
    }
    return std::unexpected("unknown operator \"" + std::string(text) + "\" (In, NotIn, Exists, DoesNotExist)");
}

std::expected<void, std::string> validate_selector(const HostSelector& selector)
{
    for (const auto& [key, value] : selector.match_labels) {
        if (key.empty()) {
            return std::unexpected("matchLabels: empty key");
        }
    }
    for (std::size_t i = 0; i < selector.match_expressions.size(); ++i) {
        const auto& r = selector.match_expressions[i];
        const std::string where = "matchExpressions[" + std::to_string(i) + "]";
        if (r.key.empty()) {
            return std::unexpected(where + ": empty key");
        }
        const bool takes_values = r.op == SelectorOperator::in || r.op == SelectorOperator::not_in;
        if (takes_values && r.values.empty()) {
            return std::unexpected(where + ": " + to_string(r.op) + " needs at least one value");
        }
        if (!takes_values && !r.values.empty()) {
            return std::unexpected(where + ": " + to_string(r.op) + " takes no values");
        }
    }
    return {};
}

bool selector_matches(const HostSelector& selector, const std::map<std::string, std::string>& labels)
{
    if (!validate_selector(selector)) {
        return false;
    }
    for (const auto& [key, want] : selector.match_labels) {
        const std::string* value = label(labels, key);
        if (value == nullptr || *value != want) {
            return false;
        }
    }
    return std::all_of(selector.match_expressions.begin(), selector.match_expressions.end(),
                       [&](const SelectorRequirement& r) { return requirement_matches(r, labels); });
}

std::string describe_selector(const HostSelector& selector)
{
    std::string out;
    auto add = [&out](const std::string& part) { out += (out.empty() ? "" : ", ") + part; };
    for (const auto& [key, value] : selector.match_labels) {
        add(key + "=" + value);
    }
    for (const auto& r : selector.match_expressions) {
        std::string values;
        for (const auto& v : r.values) {
            values += (values.empty() ? "" : ",") + v;
        }
        switch (r.op) {
        case SelectorOperator::in: add(r.key + " in (" + values + ")"); break;
        case SelectorOperator::not_in: add(r.key + " notin (" + values + ")"); break;
        case SelectorOperator::exists: add(r.key); break;
        case SelectorOperator::does_not_exist: add("!" + r.key); break;
        }
    }
    return "{" + out + "}";
}

bool in_pool(const PoolNode& node)
{
    return node.in_git && node.goal_is_available && !pool_of(node).empty();
}

std::string pool_of(const PoolNode& node)
{
    const std::string* value = label(node.labels, k_pool_label);
    return value == nullptr ? "" : *value;
}

std::string failure_domain(const PoolNode& node)
{
    const std::string* value = label(node.labels, k_zone_label);
    return value == nullptr ? "" : *value;
}

std::vector<std::string> failure_domains(const std::vector<PoolNode>& nodes)
{
    std::set<std::string> domains;
    for (const auto& node : nodes) {
        if (in_pool(node) && !failure_domain(node).empty()) {
            domains.insert(failure_domain(node));
        }
    }
    return {domains.begin(), domains.end()};
}

const char* to_string(ClaimPhase phase)
{
    switch (phase) {
    case ClaimPhase::claimed: return "claimed";
    case ClaimPhase::releasing: return "releasing";
    }
    return "?";
}

std::expected<ClaimPhase, std::string> parse_claim_phase(std::string_view text)
{
    if (text == "claimed") return ClaimPhase::claimed;
    if (text == "releasing") return ClaimPhase::releasing;
    return std::unexpected("unknown claim phase \"" + std::string(text) + "\"");
}

std::expected<void, std::string> ClaimTable::put(const ClaimRecord& record)
{
    if (record.node.empty() || record.machine.uid.empty()) {
        return std::unexpected("a claim needs a node and a machine uid");
    }
    if (const ClaimRecord* holder = by_node(record.node); holder != nullptr && holder->machine.uid != record.machine.uid) {
        return std::unexpected("node " + record.node + " is already claimed by " + holder->machine.key());
    }
    // A machine holds one node: a new node for the same machine replaces the old record.
    erase_machine(record.machine.uid);
    m_by_node[record.node] = record;
    m_node_by_uid[record.machine.uid] = record.node;
    return {};
}

bool ClaimTable::erase_machine(const std::string& uid)
{
    auto it = m_node_by_uid.find(uid);
    if (it == m_node_by_uid.end()) {
        return false;
    }
    m_by_node.erase(it->second);
    m_node_by_uid.erase(it);
    return true;
}

const ClaimRecord* ClaimTable::by_node(const std::string& node) const
{
    auto it = m_by_node.find(node);
    return it == m_by_node.end() ? nullptr : &it->second;
}

const ClaimRecord* ClaimTable::by_machine(const std::string& uid) const
{
    auto it = m_node_by_uid.find(uid);
    return it == m_node_by_uid.end() ? nullptr : by_node(it->second);
}

std::expected<ChoiceResult, std::string>
choose_node(const MachineRequest& request, const std::vector<PoolNode>& nodes, const ClaimTable& claims)
{
    if (auto valid = validate_selector(request.selector); !valid) {
        return std::unexpected("invalid hostSelector: " + valid.error());
    }
    const std::string& uid = request.machine.uid;

    std::vector<const PoolNode*> sorted;
    sorted.reserve(nodes.size());
    for (const auto& node : nodes) {
        sorted.push_back(&node);
    }
    std::sort(sorted.begin(), sorted.end(), [](const PoolNode* a, const PoolNode* b) { return a->name < b->name; });

    ChoiceResult result;
    // Already this machine's: choosing again must give the same node (as
    // CAPM3's chooseHost returns the host whose consumerRef is the machine).
    for (const PoolNode* node : sorted) {
        const ClaimRecord* rec = claims.by_node(node->name);
        if ((rec != nullptr && rec->machine.uid == uid) || (!uid.empty() && node->instance_uuid == uid)) {
            result.node = node->name;
            result.failure_domain = failure_domain(*node);
            result.already_claimed = true;
            result.message = node->name + " is already claimed by this machine";
            return result;
        }
    }

    std::vector<const PoolNode*> free;
    for (const PoolNode* node : sorted) {
        if (pool_of(*node).empty() || !selector_matches(request.selector, node->labels)) {
            continue;
        }
        if (!request.failure_domain.empty() && failure_domain(*node) != request.failure_domain) {
            ++result.matching_elsewhere;
            continue;
        }
        ++result.matching;
        if (auto why = not_free_reason(*node, claims, uid)) {
            result.not_free.push_back(std::move(*why));
        } else if (request.needs_node_image && node->image_url.empty()) {
            result.not_free.push_back(NotFree{node->name,
                                              "has no image in Git, and the machine's template names none",
                                              "no image"});
        } else {
            free.push_back(node);
        }
    }
    result.free = free.size();
    if (free.empty()) {
        result.message = nothing_free_message(request, result, claims);
        return result;
    }

    std::string domain = failure_domain(*free.front());
    if (request.failure_domain.empty()) {
        // Spread the cluster: the domain of a free node with the fewest nodes
        // already claimed by the same cluster; std::map orders ties by name.
        std::map<std::string, std::size_t> claimed_in;
        for (const PoolNode* node : free) {
            claimed_in.emplace(failure_domain(*node), 0);
        }
        std::map<std::string, const PoolNode*> by_name;
        for (const PoolNode* node : sorted) {
            by_name.emplace(node->name, node);
        }
        for (const auto& [node_name, rec] : claims.records()) {
            // A node being released is leaving the cluster: it does not count.
            if (request.cluster.empty() || rec.cluster != request.cluster || rec.phase == ClaimPhase::releasing) {
                continue;
            }
            auto it = by_name.find(node_name);
            if (it == by_name.end()) {
                continue;  // a claimed node no longer known anywhere: no domain to count
            }
            auto counted = claimed_in.find(failure_domain(*it->second));
            if (counted != claimed_in.end()) {
                ++counted->second;
            }
        }
        auto best = std::min_element(claimed_in.begin(), claimed_in.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
        domain = best->first;
    }
    for (const PoolNode* node : free) {
        if (failure_domain(*node) == domain) {
            result.node = node->name;
            result.failure_domain = domain;
            break;
        }
    }
    result.message = *result.node + (domain.empty() ? "" : " (" + domain + ")") + ", " +
                     plural(result.free, "free node", "free nodes") + " of " + std::to_string(result.matching) +
                     " matching";
    return result;
}

} // namespace metalsync::provider
