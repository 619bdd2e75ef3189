// The provider's pool: Kubernetes label selector semantics over Git's node
// labels, and the deterministic choice of a free node, spread across failure
// domains, with a message a person can act on when nothing is free.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "reconcilers/provider/pool.hpp"

using namespace metalsync::provider;

namespace {

using Labels = std::map<std::string, std::string>;

PoolNode pool_node(const std::string& name, const std::string& pool, const std::string& zone = "",
                   const std::string& state = "available")
{
    PoolNode n;
    n.name = name;
    n.labels[k_pool_label] = pool;
    if (!zone.empty()) {
        n.labels[k_zone_label] = zone;
    }
    n.provision_state = state;
    return n;
}

HostSelector pool_selector(const std::string& pool)
{
    HostSelector s;
    s.match_labels[k_pool_label] = pool;
    return s;
}

MachineRequest request(const std::string& name, const std::string& cluster, HostSelector selector,
                       const std::string& domain = "")
{
    MachineRequest r;
    r.machine = {"default", name, "uid-" + name};
    r.cluster = cluster;
    r.selector = std::move(selector);
    r.failure_domain = domain;
    return r;
}

ClaimRecord record(const std::string& node, const std::string& machine, const std::string& cluster,
                   ClaimPhase phase = ClaimPhase::claimed)
{
    return {node, {"default", machine, "uid-" + machine}, cluster, phase};
}

SelectorRequirement req(const std::string& key, SelectorOperator op, std::vector<std::string> values = {})
{
    return {key, op, std::move(values)};
}

} // namespace

TEST_CASE("selector: matchLabels need every pair with that exact value")
{
    HostSelector s;
    s.match_labels = {{"metalsync.dev/pool", "workers"}, {"gpu", "true"}};
    CHECK(selector_matches(s, {{"metalsync.dev/pool", "workers"}, {"gpu", "true"}, {"rack", "r1"}}));
    CHECK_FALSE(selector_matches(s, {{"metalsync.dev/pool", "workers"}}));                   // gpu missing
    CHECK_FALSE(selector_matches(s, {{"metalsync.dev/pool", "workers"}, {"gpu", "false"}}));  // wrong value
    CHECK_FALSE(selector_matches(s, {{"metalsync.dev/pool", "Workers"}, {"gpu", "true"}}));   // values are case-sensitive
}

TEST_CASE("selector: In, NotIn, Exists, DoesNotExist, with the label present and missing")
{
    const Labels rack1 = {{"rack", "r1"}};
    const Labels rack3 = {{"rack", "r3"}};
    const Labels none = {};

    HostSelector in;
    in.match_expressions = {req("rack", SelectorOperator::in, {"r1", "r2"})};
    CHECK(selector_matches(in, rack1));
    CHECK_FALSE(selector_matches(in, rack3));
    CHECK_FALSE(selector_matches(in, none));  // In needs the label

    HostSelector not_in;
    not_in.match_expressions = {req("rack", SelectorOperator::not_in, {"r1", "r2"})};
    CHECK_FALSE(selector_matches(not_in, rack1));
    CHECK(selector_matches(not_in, rack3));
    CHECK(selector_matches(not_in, none));  // NotIn: a missing label is not in the set

    HostSelector exists;
    exists.match_expressions = {req("rack", SelectorOperator::exists)};
    CHECK(selector_matches(exists, rack1));
    CHECK(selector_matches(exists, {{"rack", ""}}));  // present with an empty value still exists
    CHECK_FALSE(selector_matches(exists, none));

    HostSelector absent;
    absent.match_expressions = {req("rack", SelectorOperator::does_not_exist)};
    CHECK_FALSE(selector_matches(absent, rack1));
    CHECK(selector_matches(absent, none));
}

TEST_CASE("selector: matchLabels and every expression must all hold")
{
    HostSelector s = pool_selector("workers");
    s.match_expressions = {req("rack", SelectorOperator::in, {"r1"}), req("old", SelectorOperator::does_not_exist)};
    CHECK(selector_matches(s, {{k_pool_label, "workers"}, {"rack", "r1"}}));
    CHECK_FALSE(selector_matches(s, {{k_pool_label, "workers"}, {"rack", "r1"}, {"old", "yes"}}));
    CHECK_FALSE(selector_matches(s, {{k_pool_label, "storage"}, {"rack", "r1"}}));
}

TEST_CASE("selector: the empty selector matches everything, an invalid one nothing")
{
    CHECK(selector_matches(HostSelector{}, {}));
    CHECK(selector_matches(HostSelector{}, {{"anything", "x"}}));

    HostSelector in_without_values;
    in_without_values.match_expressions = {req("rack", SelectorOperator::in)};
    CHECK_FALSE(validate_selector(in_without_values));
    CHECK_FALSE(selector_matches(in_without_values, {{"rack", "r1"}}));

    // NotIn with no values would match every node if it were evaluated:
    // Kubernetes refuses it, and so does metalsync.
    HostSelector not_in_without_values;
    not_in_without_values.match_expressions = {req("rack", SelectorOperator::not_in)};
    CHECK_FALSE(selector_matches(not_in_without_values, {}));

    HostSelector exists_with_values;
    exists_with_values.match_expressions = {req("rack", SelectorOperator::exists, {"r1"})};
    auto v = validate_selector(exists_with_values);
    REQUIRE_FALSE(v);
    CHECK(v.error() == "matchExpressions[0]: Exists takes no values");
}

TEST_CASE("selector operators are Kubernetes' exact spellings")
{
    CHECK(parse_selector_operator("In").value() == SelectorOperator::in);
    CHECK(parse_selector_operator("NotIn").value() == SelectorOperator::not_in);
    CHECK(parse_selector_operator("Exists").value() == SelectorOperator::exists);
    CHECK(parse_selector_operator("DoesNotExist").value() == SelectorOperator::does_not_exist);
    CHECK_FALSE(parse_selector_operator("in"));
    CHECK_FALSE(parse_selector_operator("Equals"));
}

TEST_CASE("pool membership and failure domains come from Git's labels and goal")
{
    PoolNode n = pool_node("n1", "workers", "rack1");
    CHECK(in_pool(n));
    CHECK(pool_of(n) == "workers");
    CHECK(failure_domain(n) == "rack1");

    n.goal_is_available = false;
    CHECK_FALSE(in_pool(n));
    n.goal_is_available = true;
    n.in_git = false;
    CHECK_FALSE(in_pool(n));

    PoolNode plain;
    plain.name = "storage-1";
    CHECK_FALSE(in_pool(plain));
    CHECK(failure_domain(plain).empty());

    std::vector<PoolNode> nodes = {pool_node("a", "w", "rack2"), pool_node("b", "w", "rack1"),
                                   pool_node("c", "w", "rack2"), pool_node("d", "w"), plain};
    CHECK(failure_domains(nodes) == std::vector<std::string>{"rack1", "rack2"});
}

TEST_CASE("claim table: one node per machine, one machine per node")
{
    ClaimTable t;
    REQUIRE(t.put(record("n1", "m1", "c")));
    auto taken = t.put(record("n1", "m2", "c"));
    REQUIRE_FALSE(taken);
    CHECK(taken.error() == "node n1 is already claimed by default/m1");
    CHECK(t.by_node("n1")->machine.name == "m1");

    // The same machine on another node replaces its record: never two nodes.
    REQUIRE(t.put(record("n2", "m1", "c")));
    CHECK(t.by_node("n1") == nullptr);
    CHECK(t.by_machine("uid-m1")->node == "n2");
    CHECK(t.size() == 1);

    CHECK(t.erase_machine("uid-m1"));
    CHECK_FALSE(t.erase_machine("uid-m1"));
    CHECK(t.size() == 0);
}

TEST_CASE("choose: the first free node by name, whatever the input order")
{
    std::vector<PoolNode> nodes = {pool_node("w-03", "workers"), pool_node("w-01", "workers", "", "cleaning"),
                                   pool_node("w-02", "workers"), pool_node("s-01", "storage")};
    ClaimTable claims;
    auto r = choose_node(request("m1", "c1", pool_selector("workers")), nodes, claims);
    REQUIRE(r);
    REQUIRE(r->node);
    CHECK(*r->node == "w-02");
    CHECK(r->matching == 3);
    CHECK(r->free == 2);
    CHECK_FALSE(r->already_claimed);
}

TEST_CASE("choose: only pool nodes are candidates, even for an empty selector")
{
    PoolNode storage;
    storage.name = "a-storage";
    storage.provision_state = "available";
    std::vector<PoolNode> nodes = {storage, pool_node("b-worker", "workers")};
    auto r = choose_node(request("m1", "c1", HostSelector{}), nodes, ClaimTable{});
    REQUIRE(r);
    REQUIRE(r->node);
    CHECK(*r->node == "b-worker");
    CHECK(r->matching == 1);
}

TEST_CASE("choose: a node claimed in the table, or by instance_uuid in Ironic, is not free")
{
    std::vector<PoolNode> nodes = {pool_node("w-01", "workers"), pool_node("w-02", "workers"),
                                   pool_node("w-03", "workers")};
    nodes[1].instance_uuid = "someone-else";  // Ironic says so; the store does not know it
    ClaimTable claims;
    REQUIRE(claims.put(record("w-01", "m0", "c1")));
    auto r = choose_node(request("m1", "c1", pool_selector("workers")), nodes, claims);
    REQUIRE(r);
    REQUIRE(r->node);
    CHECK(*r->node == "w-03");
}

TEST_CASE("choose: maintenance, busy states and Git's word keep nodes out")
{
    std::vector<PoolNode> nodes = {pool_node("w-01", "workers"), pool_node("w-02", "workers", "", "clean wait"),
                                   pool_node("w-03", "workers"), pool_node("w-04", "workers", "", ""),
                                   pool_node("w-05", "workers"), pool_node("w-06", "workers")};
    nodes[0].maintenance = true;
    nodes[2].in_git = false;
    nodes[4].goal_is_available = false;
    auto r = choose_node(request("m1", "c1", pool_selector("workers")), nodes, ClaimTable{});
    REQUIRE(r);
    REQUIRE(r->node);
    CHECK(*r->node == "w-06");
    CHECK(r->not_free.size() == 5);
}

TEST_CASE("choose: nothing free says how many match, why each is not free, in counts")
{
    std::vector<PoolNode> nodes = {pool_node("w-01", "workers"), pool_node("w-02", "workers"),
                                   pool_node("w-03", "workers", "", "cleaning"), pool_node("s-01", "storage")};
    ClaimTable claims;
    REQUIRE(claims.put(record("w-01", "a", "other")));
    REQUIRE(claims.put(record("w-02", "b", "other")));
    auto r = choose_node(request("m1", "c1", pool_selector("workers")), nodes, claims);
    REQUIRE(r);
    CHECK_FALSE(r->node);
    CHECK(r->matching == 3);
    CHECK(r->free == 0);
    CHECK(r->message ==
          "3 nodes match, 0 free (2 claimed, 1 cleaning): w-01 claimed by default/a; w-02 claimed by default/b; "
          "w-03 cleaning");
}

TEST_CASE("choose: no node matches at all names the selector")
{
    std::vector<PoolNode> nodes = {pool_node("w-01", "workers")};
    auto r = choose_node(request("m1", "c1", pool_selector("gpu")), nodes, ClaimTable{});
    REQUIRE(r);
    CHECK_FALSE(r->node);
    CHECK(r->matching == 0);
    CHECK(r->message == "no pool node matches hostSelector {metalsync.dev/pool=gpu}");
}

TEST_CASE("choose: a long list of busy nodes is cut, the rest counted")
{
    std::vector<PoolNode> nodes;
    for (int i = 10; i < 22; ++i) {
        nodes.push_back(pool_node("w-" + std::to_string(i), "workers", "", "deploying"));
    }
    auto r = choose_node(request("m1", "c1", pool_selector("workers")), nodes, ClaimTable{});
    REQUIRE(r);
    CHECK(r->message.starts_with("12 nodes match, 0 free (12 deploying): w-10 deploying; "));
    CHECK(r->message.ends_with("w-17 deploying; and 4 more"));
}

TEST_CASE("choose: a named failure domain restricts the choice to its nodes")
{
    std::vector<PoolNode> nodes = {pool_node("w-01", "workers", "rack1"), pool_node("w-02", "workers", "rack2"),
                                   pool_node("w-03", "workers", "rack2")};
    auto r = choose_node(request("m1", "c1", pool_selector("workers"), "rack2"), nodes, ClaimTable{});
    REQUIRE(r);
    REQUIRE(r->node);
    CHECK(*r->node == "w-02");
    CHECK(r->failure_domain == "rack2");
    CHECK(r->matching == 2);
    CHECK(r->matching_elsewhere == 1);

    nodes[1].provision_state = "cleaning";
    nodes[2].maintenance = true;
    auto none = choose_node(request("m1", "c1", pool_selector("workers"), "rack2"), nodes, ClaimTable{});
    REQUIRE(none);
    CHECK_FALSE(none->node);  // w-01 is free, but in rack1
    CHECK(none->message == "2 nodes match in failure domain rack2, 0 free (1 cleaning, 1 in maintenance): "
                           "w-02 cleaning; w-03 in maintenance (1 more matches in other failure domains)");
}

TEST_CASE("choose: without a failure domain, the cluster is spread to the least used domain")
{
    std::vector<PoolNode> nodes = {pool_node("a-01", "cp", "rack1"), pool_node("a-02", "cp", "rack1"),
                                   pool_node("b-01", "cp", "rack2"), pool_node("b-02", "cp", "rack2"),
                                   pool_node("c-01", "cp", "rack3")};
    ClaimTable claims;
    // Empty table: all domains at 0, ties by name: rack1.
    auto first = choose_node(request("m1", "c1", pool_selector("cp")), nodes, claims);
    REQUIRE(first->node);
    CHECK(*first->node == "a-01");

    REQUIRE(claims.put(record("a-01", "m1", "c1")));
    auto second = choose_node(request("m2", "c1", pool_selector("cp")), nodes, claims);
    REQUIRE(second->node);
    CHECK(*second->node == "b-01");  // rack1 has one of c1's machines now

    REQUIRE(claims.put(record("b-01", "m2", "c1")));
    auto third = choose_node(request("m3", "c1", pool_selector("cp")), nodes, claims);
    REQUIRE(third->node);
    CHECK(*third->node == "c-01");

    REQUIRE(claims.put(record("c-01", "m3", "c1")));
    auto fourth = choose_node(request("m4", "c1", pool_selector("cp")), nodes, claims);
    REQUIRE(fourth->node);
    CHECK(*fourth->node == "a-02");  // all at 1: back to rack1
}

TEST_CASE("choose: only the same cluster's claims count for spreading")
{
    std::vector<PoolNode> nodes = {pool_node("a-01", "w", "rack1"), pool_node("a-02", "w", "rack1"),
                                   pool_node("a-03", "w", "rack1"), pool_node("b-01", "w", "rack2"),
                                   pool_node("b-02", "w", "rack2")};
    ClaimTable claims;
    REQUIRE(claims.put(record("a-01", "x1", "other")));
    REQUIRE(claims.put(record("a-02", "x2", "other")));
    REQUIRE(claims.put(record("b-01", "m1", "c1")));
    auto r = choose_node(request("m2", "c1", pool_selector("w")), nodes, claims);
    REQUIRE(r->node);
    CHECK(*r->node == "a-03");  // rack1 is full of another cluster, but holds none of c1

}

TEST_CASE("choose: a node the cluster is releasing does not count for spreading")
{
    std::vector<PoolNode> nodes = {pool_node("a-01", "w", "rack1"), pool_node("a-02", "w", "rack1"),
                                   pool_node("b-01", "w", "rack2"), pool_node("b-02", "w", "rack2")};
    ClaimTable claims;
    REQUIRE(claims.put(record("a-01", "m1", "c1")));
    REQUIRE(claims.put(record("b-01", "m0", "c1", ClaimPhase::releasing)));
    auto r = choose_node(request("m2", "c1", pool_selector("w")), nodes, claims);
    REQUIRE(r->node);
    CHECK(*r->node == "b-02");  // rack1 keeps one of c1's machines, rack2 none that stays
}

TEST_CASE("choose: a node already this machine's is chosen again")
{
    std::vector<PoolNode> nodes = {pool_node("w-01", "workers"), pool_node("w-02", "workers", "", "active")};
    nodes[1].instance_uuid = "uid-m1";
    auto r = choose_node(request("m1", "c1", pool_selector("workers")), nodes, ClaimTable{});
    REQUIRE(r->node);
    CHECK(*r->node == "w-02");
    CHECK(r->already_claimed);
}

TEST_CASE("choose: an upgrade with no spare says a rolling update needs one")
{
    std::vector<PoolNode> nodes = {pool_node("w-01", "workers", "", "active"),
                                   pool_node("w-02", "workers", "", "active")};
    ClaimTable claims;
    REQUIRE(claims.put(record("w-01", "old-1", "c1")));
    REQUIRE(claims.put(record("w-02", "old-2", "c1")));
    auto r = choose_node(request("new-1", "c1", pool_selector("workers")), nodes, claims);
    REQUIRE(r);
    CHECK_FALSE(r->node);
    CHECK(r->message.find("2 nodes match, 0 free (2 claimed)") == 0);
    CHECK(r->message.find("a rolling update needs a spare node") != std::string::npos);

    // Another cluster holding them: no such hint, it would mislead.
    auto other = choose_node(request("x", "c2", pool_selector("workers")), nodes, claims);
    CHECK(other->message.find("rolling update") == std::string::npos);

    // The old machine releasing its node is counted apart.
    REQUIRE(claims.put(record("w-02", "old-2", "c1", ClaimPhase::releasing)));
    auto releasing = choose_node(request("new-1", "c1", pool_selector("workers")), nodes, claims);
    CHECK(releasing->message.find("2 nodes match, 0 free (1 claimed, 1 releasing)") == 0);
}

TEST_CASE("choose: an invalid selector is an error, not an empty choice")
{
    HostSelector s;
    s.match_expressions = {req("rack", SelectorOperator::in)};
    auto r = choose_node(request("m1", "c1", s), {pool_node("w-01", "workers")}, ClaimTable{});
    REQUIRE_FALSE(r);
    CHECK(r.error() == "invalid hostSelector: matchExpressions[0]: In needs at least one value");
}
