// The Ironic adapter against a real Ironic (scripts/ironic-testbed), started
// once for this executable.

#include <set>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "reconcilers/http/redact.hpp"
#include "reconcilers/ironic/ironic_client.hpp"
#include "tests/unit/ironic_fixture.hpp"

using namespace metalsync;
using namespace metalsync::test;
using nlohmann::json;

namespace {

constexpr const char* k_bmc_password = "Sup3r-S3cret-BMC-pw";

json fake_node(const std::string& name)
{
    return json{{"name", name},
                {"driver", "fake-hardware"},
                {"boot_interface", "fake"},
                {"deploy_interface", "fake"},
                {"power_interface", "fake"},
                {"management_interface", "fake"},
                {"inspect_interface", "fake"},
                {"driver_info", {{"ipmi_address", "127.0.0.1"}, {"ipmi_username", "admin"}, {"ipmi_password", k_bmc_password}}}};
}

IronicConnection connection_to(std::string endpoint, IronicAuth auth = NoAuth{})
{
    IronicConnection connection;
    connection.endpoint = std::move(endpoint);
    connection.auth = std::move(auth);
    return connection;
}

IronicClient shared_client()
{
    return IronicClient(connection_to(shared_ironic_endpoint()));
}

void check_no_secret(const ApiError& error)
{
    CHECK(error.message.find(k_bmc_password) == std::string::npos);
    CHECK(error.describe().find(k_bmc_password) == std::string::npos);
}

} // namespace

TEST_SUITE("reconcilers")
{
    TEST_CASE("ironic client: negotiates a version within the server's range")
    {
        auto client = shared_client();
        auto version = client.negotiate();
        REQUIRE_MESSAGE(version.has_value(), version.error().describe());
        CHECK(*version >= k_min_required_version);
        CHECK(*version <= k_max_wanted_version);
        CHECK(client.version() == *version);
        CHECK(client.supports(56));
        CHECK(client.supports(version->minor));
        CHECK_FALSE(client.supports(version->minor + 1));
    }

    TEST_CASE("ironic client: a created node reads back with its password masked; Ironic's 4xx are reported, not retried")
    {
        auto client = shared_client();
        auto created = client.create_node(fake_node("mask-node"));
        REQUIRE_MESSAGE(created.has_value(), created.error().describe());
        CHECK(created->provision_state == "enroll");
        CHECK(created->driver == "fake-hardware");
        CHECK(created->interfaces.at("deploy") == "fake");
        CHECK(created->driver_info.at("ipmi_password") == "******");

        auto read = client.get_node("mask-node");
        REQUIRE(read.has_value());
        CHECK(read->uuid == created->uuid);
        CHECK(read->driver_info.at("ipmi_password") == "******");
        CHECK(read->driver_info.dump().find(k_bmc_password) == std::string::npos);

        SUBCASE("unknown driver: 400 with Ironic's message")
        {
            auto body = fake_node("bad-driver-node");
            body["driver"] = "no-such-driver";
            auto error = client.create_node(body);
            REQUIRE_FALSE(error.has_value());
            CHECK(error.error().http_status == 400);
            CHECK_FALSE(error.error().retryable);
            CHECK_FALSE(error.error().node_locked);
            CHECK(error.error().operation == "POST /v1/nodes");
            CHECK_MESSAGE(error.error().message.find("no-such-driver") != std::string::npos, error.error().message);
            CHECK(error.error().message.find("faultstring") == std::string::npos);
            check_no_secret(error.error());
        }
        SUBCASE("duplicate name: 409 that is not NodeLocked")
        {
            auto error = client.create_node(fake_node("mask-node"));
            REQUIRE_FALSE(error.has_value());
            CHECK(error.error().http_status == 409);
            CHECK_FALSE(error.error().retryable);
            CHECK_FALSE(error.error().node_locked);
            CHECK_MESSAGE(error.error().message.find("mask-node") != std::string::npos, error.error().message);
            check_no_secret(error.error());
        }
        SUBCASE("unknown node: 404")
        {
            auto error = client.get_node("no-such-node");
            REQUIRE_FALSE(error.has_value());
            CHECK(error.error().http_status == 404);
            CHECK_FALSE(error.error().retryable);
            CHECK(error.error().message.find("no-such-node") != std::string::npos);
        }
        SUBCASE("a bad patch that echoes the password back")
        {
            // A JSON-Patch "test" on the password makes Ironic quote the
            // operation; whatever it says, the password must not get through.
            auto error = client.patch_node(
                "mask-node", json::array({{{"op", "replace"}, {"path", "/driver_info/ipmi_password"}, {"value", k_bmc_password}},
                                          {{"op", "bogus"}, {"path", "/extra/x"}, {"value", k_bmc_password}}}));
            REQUIRE_FALSE(error.has_value());
            CHECK(error.error().http_status == 400);
            check_no_secret(error.error());
        }
        SUBCASE("inventory: not found for a node that was never inspected")
        {
            auto inventory = client.get_inventory("mask-node");
            REQUIRE_FALSE(inventory.has_value());
            CHECK(inventory.error().http_status == 404);
        }
        SUBCASE("maintenance on and off")
        {
            REQUIRE(client.set_maintenance("mask-node", true, "disk swap").has_value());
            auto node = client.get_node("mask-node");
            REQUIRE(node.has_value());
            CHECK(node->maintenance);
            CHECK(node->maintenance_reason == "disk swap");
            REQUIRE(client.set_maintenance("mask-node", false).has_value());
            CHECK_FALSE(client.get_node("mask-node")->maintenance);
        }
        REQUIRE(client.delete_node("mask-node").has_value());
    }

    TEST_CASE("ironic client: full lifecycle of a fake-hardware node")
    {
        auto client = shared_client();
        auto created = client.create_node(fake_node("life-node"));
        REQUIRE_MESSAGE(created.has_value(), created.error().describe());
        const auto uuid = created->uuid;

        auto port = client.create_port(uuid, "52:54:00:AB:CD:01", true, "physnet1");
        REQUIRE_MESSAGE(port.has_value(), port.error().describe());
        CHECK(port->mac == "52:54:00:ab:cd:01");
        CHECK(port->node_uuid == uuid);
        CHECK(port->physical_network == "physnet1");

        // manage: enroll -> verifying -> manageable, watched through observe()
        REQUIRE(client.set_provision_state("life-node", "manage").has_value());
        std::string last;
        const bool manageable = wait_until(
            [&] {
                auto state = client.observe();
                if (!state) {
                    last = state.error().describe();
                    return false;
                }
                CHECK(state->complete);
                const auto& node = state->nodes.at("life-node");
                last = node.provision_state;
                return node.provision_state == "manageable" && node.target_provision_state.empty();
            },
            std::chrono::seconds(60));
        REQUIRE_MESSAGE(manageable, "last seen: " << last);
        {
            auto state = client.observe();
            REQUIRE(state.has_value());
            const auto& node = state->nodes.at("life-node");
            REQUIRE(node.ports.size() == 1);
            CHECK(node.ports[0].mac == "52:54:00:ab:cd:01");
            CHECK(node.ports[0].pxe_enabled);
            CHECK(node.uuid == uuid);
            CHECK(node.interfaces.at("boot") == "fake");
            CHECK(node.driver_info.at("ipmi_password") == "******");
        }

        // provide: manageable -> cleaning -> available
        REQUIRE(client.set_provision_state("life-node", "provide").has_value());
        REQUIRE(wait_for_provision_state(client, "life-node", "available") == "available");

        auto patched = client.patch_node(
            "life-node", json::array({{{"op", "add"}, {"path", "/instance_info/image_source"}, {"value", "http://127.0.0.1:1/img"}},
                                      {{"op", "add"}, {"path", "/instance_info/image_checksum"},
                                       {"value", "d41d8cd98f00b204e9800998ecf8427e"}}}));
        REQUIRE_MESSAGE(patched.has_value(), patched.error().describe());
        CHECK(patched->instance_info.at("image_source") == "http://127.0.0.1:1/img");

        // deploy with a configdrive object (target "active", docs/ironic-testbed.md 7)
        const json configdrive{{"user_data", "#cloud-config\nhostname: life-node\n"}, {"meta_data", json::object()}};
        auto deploy = client.set_provision_state("life-node", "active", json{{"configdrive", configdrive}});
        REQUIRE_MESSAGE(deploy.has_value(), deploy.error().describe());
        REQUIRE(wait_for_provision_state(client, "life-node", "active") == "active");
        {
            auto node = client.get_node("life-node");
            REQUIRE(node.has_value());
            CHECK(node->last_error.empty());
        }

        // a state Ironic refuses from here: 400, not retryable
        auto refused = client.set_provision_state("life-node", "manage");
        REQUIRE_FALSE(refused.has_value());
        CHECK(refused.error().http_status == 400);
        CHECK_FALSE(refused.error().retryable);

        REQUIRE(client.set_power_state("life-node", "power on").has_value());
        CHECK(wait_until([&] { return client.get_node("life-node")->power_state == "power on"; }, std::chrono::seconds(30)));
        REQUIRE(client.set_power_state("life-node", "power off").has_value());
        CHECK(wait_until([&] { return client.get_node("life-node")->power_state == "power off"; }, std::chrono::seconds(30)));

        // undeploy: active -> deleting -> cleaning -> available
        REQUIRE(client.set_provision_state("life-node", "deleted").has_value());
        REQUIRE(wait_for_provision_state(client, "life-node", "available") == "available");

        // retire: manage, delete
        REQUIRE(client.set_provision_state("life-node", "manage").has_value());
        REQUIRE(wait_for_provision_state(client, "life-node", "manageable") == "manageable");
        REQUIRE(client.delete_port(port->uuid).has_value());
        auto deleted = client.delete_node("life-node");
        REQUIRE_MESSAGE(deleted.has_value(), deleted.error().describe());
        auto gone = client.get_node(uuid);
        REQUIRE_FALSE(gone.has_value());
        CHECK(gone.error().http_status == 404);
        auto state = client.observe();
        REQUIRE(state.has_value());
        CHECK(state->nodes.count("life-node") == 0);
    }

    TEST_CASE("ironic client: lists page through markers")
    {
        auto client = shared_client();
        std::set<std::string> names;
        for (int i = 0; i < 5; ++i) {
            const auto name = "page-node-" + std::to_string(i);
            auto node = client.create_node(json{{"name", name}, {"driver", "fake-hardware"}});
            REQUIRE_MESSAGE(node.has_value(), node.error().describe());
            char mac[32];
            std::snprintf(mac, sizeof mac, "52:54:00:00:00:%02x", i);
            REQUIRE(client.create_port(node->uuid, mac).has_value());
            names.insert(name);
        }
        auto full = client.list_nodes();
        REQUIRE(full.has_value());

        client.set_page_size(2);
        auto paged = client.list_nodes();
        REQUIRE_MESSAGE(paged.has_value(), paged.error().describe());
        CHECK(paged->size() == full->size());
        std::set<std::string> uuids;
        std::set<std::string> seen;
        for (const auto& node : *paged) {
            uuids.insert(node.uuid);
            seen.insert(node.name);
        }
        CHECK(uuids.size() == paged->size());  // no node twice
        for (const auto& name : names) {
            CHECK_MESSAGE(seen.count(name) == 1, name);
        }

        auto ports = client.list_ports();
        REQUIRE(ports.has_value());
        std::set<std::string> port_uuids;
        for (const auto& port : *ports) {
            port_uuids.insert(port.uuid);
        }
        CHECK(port_uuids.size() == ports->size());
        CHECK(ports->size() >= 5);

        auto state = client.observe();
        REQUIRE(state.has_value());
        for (const auto& name : names) {
            REQUIRE(state->nodes.count(name) == 1);
            CHECK(state->nodes.at(name).ports.size() == 1);
            CHECK(state->nodes.at(name).provision_state == "enroll");
        }
        for (const auto& name : names) {
            CHECK(client.delete_node(name).has_value());
        }
    }

    TEST_CASE("ironic client: Keystone token from a fake identity service, catalog pointing at the real Ironic")
    {
        const auto ironic = shared_ironic_endpoint();
        std::atomic<int> token_requests{0};
        FakeHttpServer keystone([&](const FakeRequest& request) -> FakeResponse {
            if (request.method != "POST" || request.path != "/v3/auth/tokens") {
                return {404, {}, R"({"error": {"message": "not found", "code": 404}})"};
            }
            const auto n = ++token_requests;
            const json body{{"token",
                             {{"expires_at", "2099-01-01T00:00:00.000000Z"},
                              {"catalog",
                               json::array({{{"type", "baremetal"},
                                             {"endpoints",
                                              json::array({{{"interface", "internal"}, {"region_id", "RegionOne"}, {"url", "http://127.0.0.1:1"}},
                                                           {{"interface", "public"}, {"region_id", "RegionOne"}, {"url", ironic + "/v1/"}}})}}})}}}};
            return {201, {{"X-Subject-Token", "token-" + std::to_string(n)}}, body.dump()};
        });
        KeystoneCredentials credentials;
        credentials.auth_url = keystone.url() + "/v3/";
        credentials.username = "metalsync";
        credentials.password = "keystone-pw-123";
        credentials.project_name = "baremetal";
        IronicClient client(connection_to("", credentials));
        auto first = client.list_nodes();
        REQUIRE_MESSAGE(first.has_value(), first.error().describe());
        CHECK(client.endpoint() == ironic);
        auto second = client.observe();
        REQUIRE(second.has_value());
        CHECK(token_requests == 1);  // cached

        const auto requests = keystone.requests();
        REQUIRE(requests.size() == 1);
        const auto sent = json::parse(requests[0].body);
        CHECK(sent["auth"]["identity"]["password"]["user"]["name"] == "metalsync");
        CHECK(sent["auth"]["identity"]["password"]["user"]["password"] == "keystone-pw-123");
        CHECK(sent["auth"]["scope"]["project"]["name"] == "baremetal");
    }

    TEST_CASE("ironic client: http_basic against a second Ironic")
    {
        IronicTestbed basic("ironic-basic", {"--basic", "metalsync:basic-pw-42"});
        REQUIRE_MESSAGE(!basic.endpoint().empty(), basic.error());

        IronicClient anonymous(connection_to(basic.endpoint()));
        auto refused = anonymous.list_nodes();
        REQUIRE_FALSE(refused.has_value());
        CHECK(refused.error().http_status == 401);
        CHECK_FALSE(refused.error().retryable);

        IronicClient wrong(connection_to(basic.endpoint(), BasicAuth{"metalsync", "wrong-pw-99"}));
        auto denied = wrong.list_nodes();
        REQUIRE_FALSE(denied.has_value());
        CHECK(denied.error().http_status == 401);
        CHECK_MESSAGE(denied.error().message.find("authentication") != std::string::npos, denied.error().message);
        CHECK(denied.error().describe().find("wrong-pw-99") == std::string::npos);

        IronicClient right(connection_to(basic.endpoint(), BasicAuth{"metalsync", "basic-pw-42"}));
        auto created = right.create_node(json{{"name", "basic-node"}, {"driver", "fake-hardware"}});
        REQUIRE_MESSAGE(created.has_value(), created.error().describe());
        auto state = right.observe();
        REQUIRE(state.has_value());
        CHECK(state->nodes.count("basic-node") == 1);
    }
}
