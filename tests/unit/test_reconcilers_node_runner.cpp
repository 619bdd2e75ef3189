// The node action runner, credentials and the node memory: SHA-256/HMAC test
// vectors and credentials files offline, then whole node lifecycles against
// a real Ironic (scripts/ironic-testbed, started once for this executable),
// driven tick by tick through the pure planner like the daemon does.

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <expected>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "reconcilers/credentials.hpp"
#include "reconcilers/http/redact.hpp"
#include "reconcilers/ironic/node_action_runner.hpp"
#include "reconcilers/node_memory_conversion.hpp"
#include "reconcilers/node_planner.hpp"
#include "reconcilers/sha256.hpp"
#include "tests/unit/ironic_fixture.hpp"

using namespace metalsync;
using namespace metalsync::test;
using nlohmann::json;

namespace {

// Every password a test writes into a credentials file, to prove none of them
// ever reaches a result.
std::vector<std::string>& passwords_used()
{
    static std::vector<std::string> values;
    return values;
}

void write_credentials(const std::filesystem::path& dir, const std::string& name, const std::string& username,
                       const std::string& password, mode_t mode = 0600)
{
    passwords_used().push_back(password);
    write_file(dir / name, "# BMC account\nusername: " + username + "\npassword: " + password + "\n");
    REQUIRE(::chmod((dir / name).c_str(), mode) == 0);
}

// The error of a failed call, for a check's message. doctest builds the
// message even when the check passes (with -s), so never touch error() of a value.
template <class T, class E> std::string failure_of(const std::expected<T, E>& result)
{
    if (result.has_value()) {
        return "";
    }
    if constexpr (std::is_same_v<E, ApiError>) {
        return result.error().describe();
    } else {
        return result.error();
    }
}

std::string hex_of(const std::string& bytes)
{
    static constexpr char k_digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += k_digits[c >> 4];
        out += k_digits[c & 0xF];
    }
    return out;
}

std::string mac_for(int node, int port)
{
    char buf[18];
    std::snprintf(buf, sizeof buf, "52:54:00:%02x:%02x:%02x", (node >> 8) & 0xff, node & 0xff, port & 0xff);
    return buf;
}

// A fake-hardware node with IPMI-style credentials, two ports, an image and a
// config drive; every interface fake, so a whole lifecycle takes seconds.
NodeSpec fake_spec(const std::string& name, int index, const std::string& credentials,
                   ProvisionGoal goal = ProvisionGoal::active)
{
    NodeSpec s;
    s.name = name;
    s.bmc.driver = "fake-hardware";
    s.bmc.address = "127.0.0.1";
    s.bmc.port = 16000 + index;
    s.bmc.credentials = credentials;
    s.interfaces = {{"boot", "fake"},       {"deploy", "fake"},  {"power", "fake"},
                    {"management", "fake"}, {"inspect", "fake"}, {"bios", "fake"}};
    s.automated_clean = true;
    for (int p = 1; p <= 2; ++p) {
        PortSpec port;
        port.mac = mac_for(index, p);
        port.pxe = p == 1;
        s.ports.push_back(port);
    }
    s.properties = {{"cpu_arch", "x86_64"}, {"memory_mb", 16384}};
    s.resource_class = "baremetal";
    s.provision_state = goal;
    ImageSpec image;
    image.source = "http://images.example/ubuntu-22.04.qcow2";
    image.checksum = "sha256:" + std::string(64, 'c');
    s.image = image;
    ConfigDriveSpec drive;
    drive.user_data = "#!/bin/bash\necho hello from " + name + "\n";
    drive.meta_data = {{"hostname", name}};
    s.config_drive = drive;
    s.source.file = "nodes/" + name + ".yaml";
    s.source.line = 1;
    return s;
}

struct JournalLine {
    std::string node;
    ActionVerb verb;
    bool retry = false;
    ActionResult result;
};

IronicClient shared_client()
{
    IronicConnection connection;
    connection.endpoint = shared_ironic_endpoint();
    return IronicClient(std::move(connection));
}

// The daemon's loop in miniature: observe -> learn -> plan -> run every
// action -> remember, every 200 ms, with the node memory in a map.
class Converger {
  public:
    explicit Converger(const std::string& label)
        : m_dir(label), m_client(shared_client()), m_credentials(m_dir.path()),
          m_key(load_or_create_hmac_key(m_dir / "hmac.key").value()), m_runner(m_client, m_credentials, m_key),
          instance("metalsync-" + label)
    {
    }

    [[nodiscard]] const std::filesystem::path& credentials_dir() const { return m_dir.path(); }
    IronicClient& client() { return m_client; }
    [[nodiscard]] const std::string& key() const { return m_key; }
    NodeActionRunner& runner() { return m_runner; }

    Plan tick()
    {
        auto observed = m_client.observe();
        REQUIRE_MESSAGE(observed.has_value(), failure_of(observed));
        observed_state = *observed;
        for (auto& [name, node] : observed_state.nodes) {
            if (desired.nodes.contains(name) || memory.contains(name)) {
                learn_from_observation(memory[name], node);
            }
        }
        const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        PlanInput input{
            desired, observed_state, memory, instance, now, current_secret_hashes(desired, m_credentials, m_key), {}};
        Plan plan = plan_nodes(input);
        for (const auto& action : plan.actions) {
            auto it = observed_state.nodes.find(action.node);
            const ObservedNode* node = it == observed_state.nodes.end() ? nullptr : &it->second;
            auto result = m_runner.run(action, node);
            auto& mem = memory[action.node];
            if (action.retry) {
                // Attempts count against the spec they are made with.
                auto spec = desired.nodes.find(action.node);
                const auto hash = spec == desired.nodes.end() ? "" : spec_hash(spec->second);
                mem.attempts = mem.spec_hash == hash ? mem.attempts + 1 : 1;
                mem.spec_hash = hash;
            }
            apply_result(mem, result);
            if (!result.ok) {
                MESSAGE("node " << action.node << ": " << std::string(to_string(action.verb)) << ": "
                                << result.error_type << ": " << result.error);
            }
            journal.push_back({action.node, action.verb, action.retry, result});
            if (result.ok && action.verb == ActionVerb::delete_node) {
                memory.erase(action.node);
            }
        }
        for (const auto& v : plan.verdicts) {
            if (v.condition == NodeCondition::at_goal && memory.contains(v.node)) {
                memory[v.node].attempts = 0;
            }
        }
        return plan;
    }

    // Ticks until nothing is planned for our nodes and each of them (desired,
    // or still in Ironic from an earlier revision) satisfies `done`.
    bool converge(const std::function<bool(const NodeVerdict&)>& done = at_goal,
                  std::chrono::seconds deadline = std::chrono::seconds(120))
    {
        const auto until = std::chrono::steady_clock::now() + deadline;
        while (std::chrono::steady_clock::now() < until) {
            last_plan = tick();
            bool finished = last_plan.actions.empty();
            for (const auto& v : last_plan.verdicts) {
                if ((desired.nodes.contains(v.node) || memory.contains(v.node)) && !done(v)) {
                    finished = false;
                }
            }
            if (finished) {
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        MESSAGE("did not converge; last plan: " << to_json(last_plan).dump(2));
        return false;
    }

    static bool at_goal(const NodeVerdict& v) { return v.condition == NodeCondition::at_goal; }

    [[nodiscard]] NodeVerdict verdict(const std::string& node) const
    {
        for (const auto& v : last_plan.verdicts) {
            if (v.node == node) {
                return v;
            }
        }
        return NodeVerdict{node, NodeCondition::at_goal, "<no verdict>"};
    }

    [[nodiscard]] int count(const std::string& node, ActionVerb verb, std::size_t from = 0) const
    {
        int n = 0;
        for (std::size_t i = from; i < journal.size(); ++i) {
            n += journal[i].node == node && journal[i].verb == verb ? 1 : 0;
        }
        return n;
    }

    ObservedNode ironic_node(const std::string& name)
    {
        auto node = m_client.get_node(name);
        REQUIRE_MESSAGE(node.has_value(), failure_of(node));
        return *node;
    }

    // No password ever reaches an ActionResult.
    void check_no_secret_in_results() const
    {
        for (const auto& line : journal) {
            for (const auto& password : passwords_used()) {
                CHECK_MESSAGE(line.result.error.find(password) == std::string::npos, line.result.error);
                CHECK_MESSAGE(line.result.summary.find(password) == std::string::npos, line.result.summary);
            }
        }
    }

  private:
    TempDir m_dir;
    IronicClient m_client;
    CredentialsDirectory m_credentials;
    std::string m_key;
    NodeActionRunner m_runner;

  public:
    std::string instance;
    DesiredState desired;
    ObservedState observed_state;
    std::map<std::string, NodeMemory> memory;
    std::vector<JournalLine> journal;
    Plan last_plan;
};

std::vector<std::string> port_macs(IronicClient& client, const std::string& node_uuid)
{
    auto ports = client.list_ports();
    REQUIRE_MESSAGE(ports.has_value(), failure_of(ports));
    std::vector<std::string> macs;
    for (const auto& p : *ports) {
        if (p.node_uuid == node_uuid) {
            macs.push_back(p.mac);
        }
    }
    std::sort(macs.begin(), macs.end());
    return macs;
}

} // namespace

TEST_SUITE("reconcilers")
{
    TEST_CASE("sha256: NIST and RFC 4231 test vectors")
    {
        CHECK(to_hex(sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        CHECK(to_hex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        CHECK(to_hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        // A million 'a's fed in uneven pieces crosses every block boundary case.
        Sha256 million;
        const std::string piece(997, 'a');
        std::size_t left = 1'000'000;
        while (left > 0) {
            const auto n = std::min(left, piece.size());
            million.update(std::string_view(piece).substr(0, n));
            left -= n;
        }
        CHECK(to_hex(million.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        // RFC 4231 test case 1.
        CHECK(to_hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")) ==
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        // Test case 2.
        CHECK(to_hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block is hashed first.
        CHECK(to_hex(hmac_sha256(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")) ==
              "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    TEST_CASE("credentials: systemd's credentials directory first, then the configured one")
    {
        TempDir systemd_dir("creds-systemd");
        TempDir configured("creds-configured");
        write_credentials(systemd_dir.path(), "rack1-bmc", "from-systemd", "pw-systemd-1");
        write_credentials(configured.path(), "rack1-bmc", "from-config", "pw-config-1");
        write_credentials(configured.path(), "rack2-bmc", "rack2-admin", "pw-config-2");
        CredentialsDirectory credentials(systemd_dir.path(), configured.path());
        auto first = credentials.read("rack1-bmc");
        REQUIRE_MESSAGE(first.has_value(), failure_of(first));
        CHECK(first->username == "from-systemd");
        auto second = credentials.read("rack2-bmc");
        REQUIRE_MESSAGE(second.has_value(), failure_of(second));
        CHECK(second->username == "rack2-admin");
        auto missing = credentials.read("rack3-bmc");
        REQUIRE_FALSE(missing.has_value());
        CHECK(missing.error().find(systemd_dir.path().string()) != std::string::npos);  // names where it looked first
    }

    TEST_CASE("credentials: a private YAML file with username and password is read; anything else is refused")
    {
        TempDir dir("credentials");
        CredentialsDirectory credentials(dir.path());
        const std::string secret = "s3cret-Cred-Value-9";
        write_credentials(dir.path(), "rack1-bmc", "admin", secret);

        auto read = credentials.read("rack1-bmc");
        REQUIRE_MESSAGE(read.has_value(), failure_of(read));
        CHECK(read->username == "admin");
        CHECK(read->password == secret);
        // Registered: redact() masks it from now on.
        CHECK(redact("failed with " + secret) == "failed with ******");

        SUBCASE("names that are not plain file names")
        {
            for (const std::string name : {"../rack1-bmc", "a/b", "..", ".hidden", "", "rack1 bmc", "/etc/passwd"}) {
                auto bad = credentials.read(name);
                REQUIRE_FALSE(bad.has_value());
                CHECK(bad.error().find("not a plain file name") != std::string::npos);
            }
        }
        SUBCASE("group- or world-readable files")
        {
            write_credentials(dir.path(), "open", "admin", "world-readable-pw-1", 0644);
            auto bad = credentials.read("open");
            REQUIRE_FALSE(bad.has_value());
            CHECK(bad.error().find((dir / "open").string()) != std::string::npos);
            CHECK(bad.error().find("chmod 600") != std::string::npos);
            CHECK(bad.error().find("0644") != std::string::npos);
            CHECK(bad.error().find("world-readable-pw-1") == std::string::npos);
        }
        SUBCASE("missing keys, not a map, broken YAML, missing file: the file is named, its content never")
        {
            const std::string hidden = "zz-content-never-quoted-zz";
            const std::vector<std::pair<std::string, std::string>> cases = {
                {"no-password", "username: " + hidden + "\n"},
                {"no-username", "password: " + hidden + "\n"},
                {"a-list", "- " + hidden + "\n"},
                {"nested", "username: admin\npassword: {" + hidden + ": 1}\n"},
                {"broken", "username: [" + hidden + "\npassword: x\n"},
                {"empty", ""},
            };
            for (const auto& [name, content] : cases) {
                CAPTURE(name);
                write_file(dir / name, content);
                REQUIRE(::chmod((dir / name).c_str(), 0600) == 0);
                auto bad = credentials.read(name);
                REQUIRE_FALSE(bad.has_value());
                CHECK(bad.error().find((dir / name).string()) != std::string::npos);
                CHECK(bad.error().find(hidden) == std::string::npos);
            }
            auto missing = credentials.read("absent");
            REQUIRE_FALSE(missing.has_value());
            CHECK(missing.error().find((dir / "absent").string()) != std::string::npos);
        }
    }

    TEST_CASE("credentials: the HMAC key is created once, private, and the hash notices a change")
    {
        TempDir dir("hmac");
        const auto path = dir / "hmac.key";
        auto key = load_or_create_hmac_key(path);
        REQUIRE_MESSAGE(key.has_value(), failure_of(key));
        CHECK(key->size() == 32);
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        auto again = load_or_create_hmac_key(path);
        REQUIRE(again.has_value());
        CHECK(*again == *key);
        // Another install has another key.
        auto other = load_or_create_hmac_key(dir / "other.key");
        REQUIRE(other.has_value());
        CHECK(*other != *key);

        const BmcCredentials a{"admin", "password-one"};
        const BmcCredentials b{"admin", "password-two"};
        const auto ha = secret_hmac(a, *key);
        CHECK(ha.starts_with("hmac-sha256:"));
        CHECK(ha.size() == std::string("hmac-sha256:").size() + 64);
        CHECK(ha == secret_hmac(a, *key));
        CHECK(ha != secret_hmac(b, *key));
        CHECK(ha != secret_hmac(a, *other));
        CHECK(secret_hmac({"ab", "c"}, *key) != secret_hmac({"a", "bc"}, *key));
        CHECK(ha.find("password-one") == std::string::npos);
        CHECK(ha.find(hex_of("password-one")) == std::string::npos);

        SUBCASE("a readable or damaged key file is refused")
        {
            REQUIRE(::chmod(path.c_str(), 0644) == 0);
            auto open = load_or_create_hmac_key(path);
            REQUIRE_FALSE(open.has_value());
            CHECK(open.error().find("chmod 600") != std::string::npos);
            write_file(dir / "short.key", "abc");
            REQUIRE(::chmod((dir / "short.key").c_str(), 0600) == 0);
            auto shorter = load_or_create_hmac_key(dir / "short.key");
            REQUIRE_FALSE(shorter.has_value());
            CHECK(shorter.error().find("3 bytes") != std::string::npos);
        }
    }

    TEST_CASE("node memory: store row and planner memory convert both ways; observations teach what they must")
    {
        NodeStatus status;
        status.name = "node-01";
        status.attempts = 2;
        status.spec_hash = "s";
        status.next_attempt_at = 12.5;
        status.applied_secret_hash = "hmac-sha256:ab";
        status.clean_steps_hash = "c";
        status.config_drive_hash = "d";
        status.inspected = true;
        status.was_active = true;
        status.uuid = "u";
        status.last_error = "kept";
        auto memory = node_memory(status);
        CHECK(memory.attempts == 2);
        CHECK(memory.next_attempt_at == 12.5);
        CHECK(memory.applied_secret_hash == "hmac-sha256:ab");
        CHECK(memory.clean_steps_hash == "c");
        CHECK(memory.config_drive_hash == "d");
        CHECK(memory.inspected);
        CHECK(memory.was_active);
        CHECK(memory.uuid == "u");
        NodeStatus back;
        back.name = "node-01";
        back.last_error = "kept";
        store_memory(back, memory);
        CHECK(back.next_attempt_at == std::optional<double>(12.5));
        CHECK(back.clean_steps_hash == "c");
        CHECK(back.was_active);
        CHECK(back.last_error == "kept");
        memory.next_attempt_at = 0;
        store_memory(back, memory);
        CHECK_FALSE(back.next_attempt_at.has_value());

        ActionResult result;
        result.ok = true;
        result.uuid = "u2";
        result.config_drive_hash = "d2";
        apply_result(memory, result);
        CHECK(memory.uuid == "u2");
        CHECK(memory.config_drive_hash == "d2");
        CHECK(memory.clean_steps_hash == "c");
        result.ok = false;
        result.config_drive_hash = "d3";
        apply_result(memory, result);
        CHECK(memory.config_drive_hash == "d2");

        NodeMemory m;
        ObservedNode node;
        node.uuid = "u3";
        node.provision_state = "active";
        learn_from_observation(m, node);
        CHECK(m.was_active);
        CHECK(m.uuid == "u3");
        for (const std::string state : {"enroll", "verifying", "manageable", "adopting"}) {
            node.provision_state = state;
            learn_from_observation(m, node);
            CHECK(m.was_active);
        }
        node.provision_state = "available";
        learn_from_observation(m, node);
        CHECK_FALSE(m.was_active);
        m.inspected = true;
        m.clean_steps_hash = "c";
        node.provision_state = "inspect failed";
        learn_from_observation(m, node);
        CHECK_FALSE(m.inspected);
        CHECK(m.clean_steps_hash == "c");
        node.provision_state = "clean failed";
        learn_from_observation(m, node);
        CHECK(m.clean_steps_hash.empty());
    }

    TEST_CASE("node runner: a node declared in Git is enrolled and deployed with its config drive, then undeployed")
    {
        Converger c("deploy");
        write_credentials(c.credentials_dir(), "bmc-deploy", "admin", "Deploy-Pa55-word");
        auto spec = fake_spec("runner-deploy", 1, "bmc-deploy");
        spec.inspect = true;
        c.desired.nodes[spec.name] = spec;
        REQUIRE(c.converge());

        auto node = c.ironic_node(spec.name);
        CHECK(node.provision_state == "active");
        CHECK(node.instance_info.at("image_source") == spec.image->source);
        CHECK(node.instance_info.at("image_os_hash_algo") == "sha256");
        CHECK(node.instance_info.at("configdrive") == "******");
        CHECK(node.driver_info.at("ipmi_username") == "admin");
        CHECK(node.driver_info.at("ipmi_password") == "******");
        CHECK(node.driver_info.at("ipmi_address") == "127.0.0.1");
        CHECK(node.extra.at("metalsync") == c.instance);
        CHECK(port_macs(c.client(), node.uuid) == std::vector<std::string>{mac_for(1, 1), mac_for(1, 2)});
        CHECK(c.count(spec.name, ActionVerb::create_node) == 1);
        CHECK(c.count(spec.name, ActionVerb::inspect) == 1);
        CHECK(c.count(spec.name, ActionVerb::collect_inspection) == 1);
        CHECK(c.count(spec.name, ActionVerb::deploy) == 1);
        const auto& mem = c.memory.at(spec.name);
        CHECK(mem.uuid == node.uuid);
        CHECK(mem.was_active);
        CHECK(mem.inspected);
        CHECK(mem.config_drive_hash == config_drive_hash(spec));
        BmcCredentials expected{"admin", "Deploy-Pa55-word"};
        CHECK(mem.applied_secret_hash == secret_hmac(expected, c.key()));

        // Back to available: undeploy, automated cleaning, available.
        const auto before = c.journal.size();
        c.desired.nodes[spec.name].provision_state = ProvisionGoal::available;
        REQUIRE(c.converge());
        CHECK(c.ironic_node(spec.name).provision_state == "available");
        CHECK(c.count(spec.name, ActionVerb::undeploy, before) == 1);
        CHECK_FALSE(c.memory.at(spec.name).was_active);
        c.check_no_secret_in_results();
    }

    TEST_CASE("node runner: an inspection below expect holds the node at manageable until a new expect; read once each")
    {
        Converger c("inspect");
        write_credentials(c.credentials_dir(), "bmc-inspect", "admin", "Inspect-Pa55-word");
        auto spec = fake_spec("runner-inspect", 9, "bmc-inspect", ProvisionGoal::available);
        spec.inspect = true;
        spec.properties = {{"cpu_arch", "x86_64"}};
        spec.expect.cpus = 8;
        spec.expect.memory_mib = 16000;
        spec.expect.disks = 1;
        spec.expect.cpu_arch = "x86_64";
        c.desired.nodes[spec.name] = spec;
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (c.count(spec.name, ActionVerb::create_node) == 0 && std::chrono::steady_clock::now() < until) {
            c.tick();
        }
        REQUIRE(c.count(spec.name, ActionVerb::create_node) == 1);
        // The fake inspect interface finds nothing: write what an inspector
        // would have found, out of band, as ironic-inspector writes it.
        std::expected<ObservedNode, ApiError> patched;
        for (int i = 0; i < 50; ++i) {
            patched = c.client().patch_node(
                spec.name, json::array({{{"op", "add"}, {"path", "/properties/cpus"}, {"value", 4}},
                                        {{"op", "add"}, {"path", "/properties/memory_mb"}, {"value", 8192}}}));
            if (patched || !patched.error().node_locked) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        REQUIRE_MESSAGE(patched.has_value(), failure_of(patched));

        auto failed = [](const NodeVerdict& v) { return v.condition == NodeCondition::failed; };
        REQUIRE(c.converge(failed));
        CHECK(c.ironic_node(spec.name).provision_state == "manageable");
        const auto message = c.verdict(spec.name).message;
        CHECK(message.find("expect.cpus: 8, inspected 4") != std::string::npos);
        CHECK(message.find("expect.memoryMiB: 16000, inspected 8192") != std::string::npos);
        CHECK(message.find("disks") == std::string::npos); // not checkable from properties: not a mismatch
        const auto& mem = c.memory.at(spec.name);
        REQUIRE(mem.inspection.has_value());
        CHECK(mem.inspection->hardware.source == "properties"); // Ironic has no inventory for a fake inspection
        CHECK(mem.inspection->hardware.cpus == 4);
        for (int i = 0; i < 3; ++i) {
            c.tick();
        }
        CHECK(c.count(spec.name, ActionVerb::inspect) == 1);
        CHECK(c.count(spec.name, ActionVerb::collect_inspection) == 1);
        CHECK(c.count(spec.name, ActionVerb::provide) == 0);

        // Git now expects what the node has: inspected again, then provided.
        c.desired.nodes[spec.name].expect.cpus = 4;
        c.desired.nodes[spec.name].expect.memory_mib = 8000;
        REQUIRE(c.converge());
        CHECK(c.ironic_node(spec.name).provision_state == "available");
        CHECK(c.count(spec.name, ActionVerb::inspect) == 2);
        CHECK(c.count(spec.name, ActionVerb::collect_inspection) == 2);
        CHECK(c.count(spec.name, ActionVerb::provide) == 1);
    }

    TEST_CASE("node runner: out-of-band drift is put back, and rotated credentials are written again")
    {
        Converger c("drift");
        write_credentials(c.credentials_dir(), "bmc-drift", "admin", "First-Drift-Pw-1");
        auto spec = fake_spec("runner-drift", 2, "bmc-drift", ProvisionGoal::available);
        c.desired.nodes[spec.name] = spec;
        REQUIRE(c.converge());
        auto node = c.ironic_node(spec.name);
        CHECK(node.provision_state == "available");
        const auto first_hash = c.memory.at(spec.name).applied_secret_hash;
        CHECK_FALSE(first_hash.empty());

        // Someone edits the node behind metalsync's back.
        auto patched = c.client().patch_node(
            node.uuid, json::array({{{"op", "replace"}, {"path", "/properties/cpu_arch"}, {"value", "aarch64"}},
                                    {{"op", "add"}, {"path", "/properties/memory_mb"}, {"value", 1}}}));
        REQUIRE_MESSAGE(patched.has_value(), failure_of(patched));
        auto before = c.journal.size();
        REQUIRE(c.converge());
        CHECK(c.count(spec.name, ActionVerb::update_node, before) == 1);
        node = c.ironic_node(spec.name);
        CHECK(node.properties.at("cpu_arch") == "x86_64");
        CHECK(node.properties.at("memory_mb") == 16384);

        // The BMC password is rotated on the bastion.
        write_credentials(c.credentials_dir(), "bmc-drift", "admin", "Second-Drift-Pw-2");
        before = c.journal.size();
        REQUIRE(c.converge());
        REQUIRE(c.count(spec.name, ActionVerb::update_node, before) == 1);
        const auto& update = *std::find_if(c.journal.begin() + static_cast<std::ptrdiff_t>(before), c.journal.end(),
                                           [](const JournalLine& l) { return l.verb == ActionVerb::update_node; });
        CHECK(update.result.ok);
        const auto second_hash = c.memory.at(spec.name).applied_secret_hash;
        CHECK(second_hash != first_hash);
        CHECK(second_hash == secret_hmac({"admin", "Second-Drift-Pw-2"}, c.key()));
        CHECK(c.ironic_node(spec.name).driver_info.at("ipmi_password") == "******");
        // Converged: the next plan is empty.
        CHECK(c.tick().actions.empty());

        // Ports edited in Git: the second one boots over PXE now, the first goes.
        auto& ports = c.desired.nodes.at(spec.name).ports;
        ports[1].pxe = true;
        ports.erase(ports.begin());
        before = c.journal.size();
        REQUIRE(c.converge());
        CHECK(c.count(spec.name, ActionVerb::update_port, before) == 1);
        CHECK(c.count(spec.name, ActionVerb::delete_port, before) == 1);
        auto listed = c.client().list_ports();
        REQUIRE_MESSAGE(listed.has_value(), failure_of(listed));
        std::vector<std::pair<std::string, bool>> mine;
        for (const auto& p : *listed) {
            if (p.node_uuid == node.uuid) {
                mine.emplace_back(p.mac, p.pxe_enabled);
            }
        }
        CHECK(mine == std::vector<std::pair<std::string, bool>>{{mac_for(2, 2), true}});
        c.check_no_secret_in_results();
    }

    TEST_CASE("node runner: manual clean steps run once; a failing step is retried, then reported with Ironic's error")
    {
        Converger c("clean");
        write_credentials(c.credentials_dir(), "bmc-clean", "admin", "Clean-Pw-3");
        c.desired.policy.max_retries = 1;

        auto good = fake_spec("runner-clean-ok", 3, "bmc-clean", ProvisionGoal::manageable);
        good.clean_steps.push_back(CleanStep{"bios", "factory_reset", json::object()});
        auto bad = fake_spec("runner-clean-bad", 4, "bmc-clean", ProvisionGoal::manageable);
        // The fake deploy interface has no such step: clean failed, every time.
        bad.clean_steps.push_back(CleanStep{"deploy", "erase_devices_metadata", json::object()});
        c.desired.nodes[good.name] = good;
        c.desired.nodes[bad.name] = bad;

        REQUIRE(c.converge([](const NodeVerdict& v) {
            return v.condition == NodeCondition::at_goal || v.condition == NodeCondition::failed;
        }));
        CHECK(c.verdict(good.name).condition == NodeCondition::at_goal);
        CHECK(c.ironic_node(good.name).provision_state == "manageable");
        CHECK(c.count(good.name, ActionVerb::clean) == 1);
        CHECK(c.memory.at(good.name).clean_steps_hash == clean_steps_hash(good));

        const auto failed = c.verdict(bad.name);
        CHECK(failed.condition == NodeCondition::failed);
        auto node = c.ironic_node(bad.name);
        CHECK(node.provision_state == "clean failed");
        REQUIRE_FALSE(node.last_error.empty());
        CHECK(failed.message.find("clean failed after 1 attempts") != std::string::npos);
        CHECK(failed.message.find(node.last_error) != std::string::npos);
        // Tried, retried once through manage, tried again: then reported.
        CHECK(c.count(bad.name, ActionVerb::clean) == 2);
        CHECK(c.count(bad.name, ActionVerb::manage) == 2); // enroll -> manageable, then the retry

        // The user's fix in Git (no such step) starts afresh and recovers the node.
        c.desired.nodes[bad.name].clean_steps.clear();
        REQUIRE(c.converge());
        CHECK(c.ironic_node(bad.name).provision_state == "manageable");
        c.check_no_secret_in_results();
    }

    TEST_CASE("node runner: a node removed from Git with prune on is undeployed and deleted from Ironic")
    {
        Converger c("prune");
        write_credentials(c.credentials_dir(), "bmc-prune", "admin", "Prune-Pw-4");
        auto spec = fake_spec("runner-prune", 5, "bmc-prune");
        c.desired.nodes[spec.name] = spec;
        REQUIRE(c.converge());
        const auto uuid = c.ironic_node(spec.name).uuid;

        c.desired.nodes.erase(spec.name);
        c.desired.policy.prune = true;
        REQUIRE(c.converge());
        CHECK(c.count(spec.name, ActionVerb::undeploy) == 1);
        CHECK(c.count(spec.name, ActionVerb::delete_node) == 1);
        auto gone = c.client().get_node(uuid);
        REQUIRE_FALSE(gone.has_value());
        CHECK(gone.error().http_status == 404);
        CHECK(port_macs(c.client(), uuid).empty());
        CHECK_FALSE(c.memory.contains(spec.name));
        c.check_no_secret_in_results();
    }

    TEST_CASE("node runner: an active node Ironic forgot is enrolled again and adopted, never redeployed")
    {
        Converger c("adopt");
        write_credentials(c.credentials_dir(), "bmc-adopt", "admin", "Adopt-Pw-5");
        auto spec = fake_spec("runner-adopt", 6, "bmc-adopt");
        c.desired.nodes[spec.name] = spec;
        REQUIRE(c.converge());
        const auto old = c.ironic_node(spec.name);
        REQUIRE(old.provision_state == "active");
        REQUIRE(c.memory.at(spec.name).was_active);

        // Ironic loses the node (what a lost database looks like to metalsync).
        REQUIRE(c.client().set_maintenance(old.uuid, true, "test: forget this node").has_value());
        auto deleted = c.client().delete_node(old.uuid);
        REQUIRE_MESSAGE(deleted.has_value(), failure_of(deleted));

        const auto before = c.journal.size();
        REQUIRE(c.converge());
        auto node = c.ironic_node(spec.name);
        CHECK(node.provision_state == "active");
        CHECK(node.uuid != old.uuid);
        CHECK_FALSE(node.maintenance);
        CHECK(node.instance_info.at("image_source") == spec.image->source);
        CHECK(node.driver_info.at("ipmi_password") == "******");
        CHECK(port_macs(c.client(), node.uuid) == std::vector<std::string>{mac_for(6, 1), mac_for(6, 2)});
        // Enrolment and adoption, nothing that would write its disks.
        CHECK(c.count(spec.name, ActionVerb::adopt_node, before) == 2);
        CHECK(c.count(spec.name, ActionVerb::create_node, before) == 0);
        CHECK(c.count(spec.name, ActionVerb::deploy, before) == 0);
        CHECK(c.count(spec.name, ActionVerb::rebuild, before) == 0);
        CHECK(c.count(spec.name, ActionVerb::provide, before) == 0);
        CHECK(c.count(spec.name, ActionVerb::clean, before) == 0);
        CHECK(c.memory.at(spec.name).uuid == node.uuid);
        c.check_no_secret_in_results();
    }

    TEST_CASE("node runner: an unreadable credentials file fails the enrolment with error type credentials")
    {
        Converger c("badcreds");
        write_credentials(c.credentials_dir(), "bmc-open", "admin", "Open-Pw-6", 0644);
        auto spec = fake_spec("runner-badcreds", 7, "bmc-open");
        c.desired.nodes[spec.name] = spec;
        auto plan = c.tick();
        REQUIRE(c.journal.size() == 1);
        const auto& line = c.journal.front();
        CHECK(line.verb == ActionVerb::create_node);
        CHECK_FALSE(line.result.ok);
        CHECK_FALSE(line.result.retryable);
        CHECK(line.result.error_type == "credentials");
        CHECK(line.result.error.find((c.credentials_dir() / "bmc-open").string()) != std::string::npos);
        CHECK(line.result.error.find(spec.name) != std::string::npos);
        CHECK(line.result.error.find("chmod 600") != std::string::npos);
        CHECK_FALSE(c.client().get_node(spec.name).has_value());

        // Fixed on the bastion: the next tick enrolls it.
        REQUIRE(::chmod((c.credentials_dir() / "bmc-open").c_str(), 0600) == 0);
        c.tick();
        REQUIRE(c.journal.size() == 2);
        CHECK(c.journal.back().result.ok);
        CHECK(c.client().get_node(spec.name).has_value());
        c.check_no_secret_in_results();
    }

    TEST_CASE("node runner: create_node is idempotent after a crash between POST and the ports")
    {
        Converger c("idempotent");
        write_credentials(c.credentials_dir(), "bmc-idem", "admin", "Idem-Pw-7");
        auto spec = fake_spec("runner-idem", 8, "bmc-idem", ProvisionGoal::manageable);
        c.desired.nodes[spec.name] = spec;
        auto plan = plan_nodes(PlanInput{c.desired, ObservedState{}, c.memory, c.instance, 0, {}, {}});
        REQUIRE(plan.actions.size() == 1);
        auto action = plan.actions.front();
        REQUIRE(action.verb == ActionVerb::create_node);

        // The first run got as far as one port.
        auto partial = action;
        partial.params["ports"] = json::array({action.params["ports"][0]});
        auto first = c.runner().run(partial, nullptr);
        REQUIRE_MESSAGE(first.ok, first.error);
        auto second = c.runner().run(action, nullptr);
        REQUIRE_MESSAGE(second.ok, second.error);
        CHECK(second.uuid == first.uuid);
        CHECK(second.summary.find("earlier run") != std::string::npos);
        CHECK(port_macs(c.client(), first.uuid) == std::vector<std::string>{mac_for(8, 1), mac_for(8, 2)});

        // A node of that name that metalsync did not enroll is never taken over.
        auto foreign = action;
        foreign.params["node"]["extra"]["metalsync"] = "someone-else";
        auto refused = c.runner().run(foreign, nullptr);
        CHECK_FALSE(refused.ok);
        CHECK(refused.error_type == "conflict");

        // An Ironic refusal is typed and redacted.
        Action wrong{spec.name, ActionVerb::provide, "test", json::object(), "", false, false};
        auto node = c.ironic_node(spec.name);
        auto invalid = c.runner().run(wrong, &node); // enroll -> provide is not a transition
        CHECK_FALSE(invalid.ok);
        CHECK(invalid.error_type == "validation");
        CHECK_FALSE(invalid.retryable);
        CHECK(invalid.error.find(spec.name) != std::string::npos);

        c.journal.push_back({spec.name, ActionVerb::create_node, false, first});
        c.journal.push_back({spec.name, ActionVerb::create_node, false, second});
        c.journal.push_back({spec.name, ActionVerb::create_node, false, refused});
        c.journal.push_back({spec.name, ActionVerb::provide, false, invalid});
        c.check_no_secret_in_results();
    }
}
