// The YAML loader through its C++ API: scalar typing, exact error positions,
// limits against hostile input, cross-document checks, class merging and the
// parse cache. (The corpus under tests/corpus is checked through the binary by
// a script; these tests drive the library directly.)

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "sources/document_parser.hpp"
#include "sources/revision_loader.hpp"
#include "sources/yaml_reader.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;

namespace {

// The files of one revision, by path, with their ids.
struct Repo {
    std::map<std::string, std::string> content;
    std::map<std::string, std::string> ids;
    int reads = 0;

    void put(const std::string& path, const std::string& text, const std::string& id = "v1")
    {
        content[path] = text;
        ids[path] = id;
    }

    [[nodiscard]] std::vector<RepoFile> files() const
    {
        std::vector<RepoFile> out;
        for (const auto& [path, id] : ids) {
            RepoFile f;
            f.path = path;
            f.id = id;
            out.push_back(f);
        }
        return out;
    }

    RevisionLoader::ReadFile reader()
    {
        return [this](const RepoFile& f) -> std::expected<std::string, std::string> {
            ++reads;
            auto it = content.find(f.path);
            if (it == content.end()) {
                return std::unexpected("no such file");
            }
            return it->second;
        };
    }
};

std::expected<DesiredState, Diagnostics> load(Repo& repo)
{
    RevisionLoader loader;
    return loader.load(repo.files(), repo.reader());
}

std::string dump(const Diagnostics& diagnostics)
{
    std::string out;
    for (const auto& d : diagnostics) {
        out += d.to_string() + "\n";
    }
    return out;
}

bool has(const Diagnostics& diagnostics, const std::string& file, const std::string& field,
         const std::string& reason_part)
{
    return std::any_of(diagnostics.begin(), diagnostics.end(), [&](const Diagnostic& d) {
        return d.file == file && d.field == field && d.reason.find(reason_part) != std::string::npos;
    });
}

Diagnostics errors_of(const std::expected<DesiredState, Diagnostics>& result)
{
    REQUIRE_MESSAGE(!result.has_value(), "the revision was accepted");
    return result.error();
}

const DesiredState& state_of(const std::expected<DesiredState, Diagnostics>& result)
{
    if (!result) {
        FAIL("the revision was rejected:\n" << dump(result.error()));
    }
    return *result;
}

std::string node_yaml(const std::string& name, const std::string& mac, const std::string& address,
                      const std::string& extra_spec = "")
{
    return "apiVersion: metalsync.dev/v1alpha1\n"
           "kind: Node\n"
           "metadata:\n"
           "  name: " +
           name +
           "\n"
           "spec:\n"
           "  bmc:\n"
           "    driver: ipmi\n"
           "    address: " +
           address +
           "\n"
           "    credentials: rack1-bmc\n"
           "  ports:\n"
           "    - mac: " +
           mac + "\n" + extra_spec;
}

ParsedFile parse(const std::string& content, const YamlLimits& limits = {})
{
    return parse_file("nodes/test.yaml", content, limits);
}

// A document with errors of its own yields no usable node: at most one kept,
// marked incomplete, for the checks across documents.
bool no_complete_node(const ParsedFile& parsed)
{
    return std::all_of(parsed.nodes.begin(), parsed.nodes.end(), [](const NodeDocument& n) { return n.incomplete; });
}

YAML::Node scalar(const std::string& text)
{
    return YAML::Load("v: " + text)["v"];
}

} // namespace

TEST_SUITE("sources")
{

    TEST_CASE("loader: a valid node loads with defaults applied")
    {
        Repo repo;
        repo.put("nodes/n1.yaml", node_yaml("node-01", "AA:BB:CC:DD:EE:01", "192.168.1.100"));
        auto result = load(repo);
        const auto& state = state_of(result);
        REQUIRE(state.nodes.size() == 1);
        const auto& n = state.nodes.at("node-01");
        CHECK(n.bmc.driver == "ipmi");
        CHECK(n.bmc.address == "192.168.1.100");
        CHECK(n.bmc.credentials == "rack1-bmc");
        CHECK_FALSE(n.bmc.port.has_value());
        REQUIRE(n.ports.size() == 1);
        CHECK(n.ports[0].mac == "aa:bb:cc:dd:ee:01"); // normalised to lower case
        CHECK(n.ports[0].pxe);
        CHECK(n.provision_state == ProvisionGoal::available);
        CHECK(n.automated_clean);
        CHECK(n.source.file == "nodes/n1.yaml");
        CHECK(n.source.line == 1);
        CHECK_FALSE(state.has_policy);
        CHECK(state.policy.max_retries == 5);
    }

    TEST_CASE("loader: every error of a revision is reported, sorted by file, line and column")
    {
        Repo repo;
        // b.yaml: two errors in one document (a bad port and a bad boolean).
        repo.put("b.yaml", node_yaml("node-b", "aa:bb:cc:dd:ee:0b", "10.0.0.2",
                                     "  inspect: yes\n"
                                     "  resourceClass: 'bad class'\n"));
        // a.yaml: an error in the second document.
        repo.put("a.yaml", node_yaml("node-a", "aa:bb:cc:dd:ee:0a", "10.0.0.1") + "---\n" +
                               node_yaml("node-a2", "not-a-mac", "10.0.0.3"));
        // c.yaml: valid alone, but claims node-a's MAC (a cross-document error).
        repo.put("c.yaml", node_yaml("node-c", "AA:BB:CC:DD:EE:0A", "10.0.0.4"));
        auto result = load(repo);
        auto errors = errors_of(result);
        INFO(dump(errors));
        CHECK(errors.size() == 4);
        CHECK(has(errors, "a.yaml", "spec.ports[0].mac", "is not a MAC address"));
        CHECK(has(errors, "b.yaml", "spec.inspect", "expected a boolean"));
        CHECK(has(errors, "b.yaml", "spec.resourceClass", "is not a resource class"));
        CHECK(has(errors, "c.yaml", "spec.ports[0].mac", "already claimed by node 'node-a'"));
        CHECK(std::is_sorted(errors.begin(), errors.end(), [](const Diagnostic& x, const Diagnostic& y) {
            return std::tie(x.file, x.line, x.column) < std::tie(y.file, y.line, y.column);
        }));
        // a.yaml's second document starts after 11 lines and a `---`.
        CHECK(errors[0].file == "a.yaml");
        CHECK(errors[0].line == 23);
        CHECK(errors[0].column == 12);
    }

    TEST_CASE("loader: an error is reported at its exact line and column")
    {
        const std::string yaml = "# yaml-language-server: $schema=../schemas/node.schema.json\n" // 1
                                 "apiVersion: metalsync.dev/v1alpha1\n"                          // 2
                                 "kind: Node\n"                                                  // 3
                                 "metadata:\n"                                                   // 4
                                 "  name: node-01\n"                                             // 5
                                 "spec:\n"                                                       // 6
                                 "  bmc:\n"                                                      // 7
                                 "    driver: ipmi\n"                                            // 8
                                 "    address: 192.168.1.100\n"                                  // 9
                                 "    credentials: rack1-bmc\n"                                  // 10
                                 "  ports:\n"                                                    // 11
                                 "    - mac:   aa:bb:cc:dd:ee:zz\n";                             // 12
        auto parsed = parse(yaml);
        REQUIRE(parsed.diagnostics.size() == 1);
        const auto& d = parsed.diagnostics[0];
        CHECK(d.file == "nodes/test.yaml");
        CHECK(d.line == 12);
        CHECK(d.column == 14);
        CHECK(d.field == "spec.ports[0].mac");
        CHECK(d.to_string() ==
              "nodes/test.yaml:12:14: spec.ports[0].mac: 'aa:bb:cc:dd:ee:zz' is not a MAC address (aa:bb:cc:dd:ee:ff)");
        CHECK(no_complete_node(parsed));
    }

    TEST_CASE("loader: scalars are typed by the YAML 1.2 core schema")
    {
        SUBCASE("YAML 1.1 booleans and sexagesimals are strings")
        {
            for (const char* s : {"yes", "no", "on", "off", "y", "n", "aa:bb:cc:dd:ee:ff", "10:20:30:40:50:59", "1_000",
                                  "0b101", "'true'", "\"623\"", "!!str 5"}) {
                INFO(s);
                CHECK(yaml_type(scalar(s)) == YamlType::string);
            }
        }
        SUBCASE("core schema integers, floats, booleans and nulls")
        {
            CHECK(yaml_type(scalar("0x10")) == YamlType::integer);
            CHECK(yaml_type(scalar("0o17")) == YamlType::integer);
            CHECK(yaml_type(scalar("-42")) == YamlType::integer);
            CHECK(yaml_type(scalar("1.5")) == YamlType::floating);
            CHECK(yaml_type(scalar("1e3")) == YamlType::floating);
            CHECK(yaml_type(scalar(".inf")) == YamlType::floating);
            CHECK(yaml_type(scalar("true")) == YamlType::boolean);
            CHECK(yaml_type(scalar("False")) == YamlType::boolean);
            CHECK(yaml_type(scalar("~")) == YamlType::null);
            CHECK(yaml_type(scalar("null")) == YamlType::null);
            CHECK(yaml_type(scalar("")) == YamlType::null);
        }
        SUBCASE("typed reads")
        {
            Diagnostics diagnostics;
            YamlReader reader("f.yaml", diagnostics);
            CHECK(reader.integer(scalar("0x10"), "x", 0, 100) == 16);
            CHECK(reader.integer(scalar("0o17"), "x", 0, 100) == 15);
            CHECK(reader.integer(scalar("-7"), "x", -10, 100) == -7);
            CHECK(reader.string(scalar("on"), "x") == "on");
            CHECK(reader.boolean(scalar("True"), "x") == true);
            CHECK(diagnostics.empty());
            CHECK_FALSE(reader.integer(scalar("99999999999999999999"), "x", 0, 100).has_value());
            CHECK_FALSE(reader.integer(scalar("101"), "x", 0, 100).has_value());
            CHECK_FALSE(reader.boolean(scalar("yes"), "x").has_value());
            CHECK_FALSE(reader.number(scalar(".nan"), "x").has_value());
            CHECK(diagnostics.size() == 4);
        }
        SUBCASE("in a document: MACs and `on` load as strings, a quoted port is an error")
        {
            auto ok = parse(node_yaml("node-01", "10:20:30:40:50:59", "10.0.0.1",
                                      "  properties: {cpu_arch: x86_64, flag: on, size: 0x10, ratio: 1.5}\n"));
            INFO(dump(ok.diagnostics));
            REQUIRE(ok.diagnostics.empty());
            REQUIRE(ok.nodes.size() == 1);
            CHECK(ok.nodes[0].ports[0].mac == "10:20:30:40:50:59");
            CHECK(ok.nodes[0].fields.properties ==
                  nlohmann::json{{"cpu_arch", "x86_64"}, {"flag", "on"}, {"size", 16}, {"ratio", 1.5}});

            const std::string bmc_line = "  bmc: {driver: ipmi, address: 10.0.0.1, credentials: c, port: \"623\"}";
            auto bad = parse("apiVersion: metalsync.dev/v1alpha1\n"
                             "kind: Node\n"
                             "metadata: {name: node-01}\n"
                             "spec:\n" +
                             bmc_line + "\n");
            REQUIRE(bad.diagnostics.size() == 1);
            CHECK(bad.diagnostics[0].field == "spec.bmc.port");
            CHECK(bad.diagnostics[0].reason == "expected an integer, got a string");
            CHECK(bad.diagnostics[0].line == 5);
            CHECK(bad.diagnostics[0].column == static_cast<int>(bmc_line.find("\"623\"")) + 1);
            CHECK(no_complete_node(bad));
        }
    }

    TEST_CASE("loader: duplicate keys are errors at the second key")
    {
        SUBCASE("in spec")
        {
            auto parsed = parse(node_yaml("node-01", "aa:bb:cc:dd:ee:01", "10.0.0.1",
                                          "  inspect: true\n"
                                          "  inspect: false\n"));
            INFO(dump(parsed.diagnostics));
            REQUIRE(parsed.diagnostics.size() == 1);
            CHECK(parsed.diagnostics[0].field == "spec.inspect");
            CHECK(parsed.diagnostics[0].reason == "duplicate key 'inspect'");
            CHECK(parsed.diagnostics[0].line == 13);
            CHECK(parsed.diagnostics[0].column == 3);
            CHECK(no_complete_node(parsed));
        }
        SUBCASE("inside properties")
        {
            auto parsed = parse(node_yaml("node-01", "aa:bb:cc:dd:ee:01", "10.0.0.1",
                                          "  properties:\n"
                                          "    cpu_arch: x86_64\n"
                                          "    cpu_arch: aarch64\n"));
            INFO(dump(parsed.diagnostics));
            CHECK(has(parsed.diagnostics, "nodes/test.yaml", "spec.properties.cpu_arch", "duplicate key"));
            CHECK(no_complete_node(parsed));
        }
        SUBCASE("in a Kubernetes object")
        {
            auto parsed = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: 1}\ndata: {k: 2}\n");
            INFO(dump(parsed.diagnostics));
            CHECK(has(parsed.diagnostics, "nodes/test.yaml", "data", "duplicate key 'data'"));
            CHECK(parsed.kube_objects.empty());
        }
    }

    TEST_CASE("loader: unknown fields are reported at every depth")
    {
        auto parsed = parse("apiVersion: metalsync.dev/v1alpha1\n"
                            "kind: Node\n"
                            "metadata:\n"
                            "  name: node-01\n"
                            "  namespace: default\n" // metalsync objects have no namespace
                            "spec:\n"
                            "  bmc:\n"
                            "    driver: ipmi\n"
                            "    address: 10.0.0.1\n"
                            "    credentials: c\n"
                            "    username: admin\n" // a credential in Git
                            "  ports:\n"
                            "    - mac: aa:bb:cc:dd:ee:01\n"
                            "      vlan: 12\n"
                            "  image:\n"
                            "    source: file:///images/a.qcow2\n"
                            "    format: qcow2\n"
                            "  cleanSteps:\n"
                            "    - {interface: deploy, step: erase_devices, priority: 1}\n"
                            "  provisioning: active\n"
                            "status: {}\n");
        INFO(dump(parsed.diagnostics));
        const std::vector<std::pair<std::string, int>> expected = {
            {"metadata.namespace", 5},
            {"spec.bmc.username", 11},
            {"spec.ports[0].vlan", 14},
            {"spec.image.format", 17},
            {"spec.cleanSteps[0].priority", 19},
            {"spec.provisioning", 20},
            {"status", 21},
        };
        for (const auto& [field, line] : expected) {
            INFO(field);
            auto it = std::find_if(parsed.diagnostics.begin(), parsed.diagnostics.end(),
                                   [&](const Diagnostic& d) { return d.field == field; });
            REQUIRE(it != parsed.diagnostics.end());
            CHECK(it->line == line);
            CHECK(it->reason.starts_with("unknown field"));
        }
        CHECK(parsed.diagnostics.size() == expected.size());
        CHECK(no_complete_node(parsed));
    }

    TEST_CASE("loader: an alias bomb in properties is rejected by the node budget")
    {
        // Nine levels of nine aliases: 9^9 (387 million) values once expanded.
        std::string yaml = node_yaml("node-01", "aa:bb:cc:dd:ee:01", "10.0.0.1", "  properties:\n");
        yaml += "    l0: &l0 [x, x, x, x, x, x, x, x, x]\n";
        for (int level = 1; level <= 8; ++level) {
            std::string prev = "*l" + std::to_string(level - 1);
            yaml += "    l" + std::to_string(level) + ": &l" + std::to_string(level) + " [";
            for (int i = 0; i < 9; ++i) {
                yaml += (i == 0 ? "" : ", ") + prev;
            }
            yaml += "]\n";
        }
        SUBCASE("in a Node")
        {
            auto parsed = parse(yaml);
            INFO(dump(parsed.diagnostics));
            REQUIRE_FALSE(parsed.diagnostics.empty());
            REQUIRE(parsed.diagnostics.size() == 1);
            CHECK(parsed.diagnostics[0].field.starts_with("spec.properties.l"));
            CHECK(parsed.diagnostics[0].reason.find("(an alias bomb?)") != std::string::npos);
            CHECK(no_complete_node(parsed));
        }
        SUBCASE("in a Kubernetes object")
        {
            std::string kube = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n";
            kube += yaml.substr(yaml.find("    l0:"));
            auto parsed = parse(kube);
            INFO(dump(parsed.diagnostics));
            REQUIRE(parsed.diagnostics.size() == 1);
            CHECK(parsed.diagnostics[0].reason.find("more than 200000 values") != std::string::npos);
            CHECK(parsed.kube_objects.empty());
        }
    }

    TEST_CASE("loader: deep nesting is rejected, never a crash")
    {
        SUBCASE("past the depth limit inside properties")
        {
            std::string nested = "x";
            for (int i = 0; i < 100; ++i) {
                nested = "{a: " + nested + "}";
            }
            auto parsed =
                parse(node_yaml("node-01", "aa:bb:cc:dd:ee:01", "10.0.0.1", "  properties: " + nested + "\n"));
            INFO(dump(parsed.diagnostics));
            REQUIRE(parsed.diagnostics.size() == 1);
            CHECK(parsed.diagnostics[0].reason.find("levels deep") != std::string::npos);
            CHECK(parsed.diagnostics[0].field.starts_with("spec.properties.a.a.a"));
            CHECK(no_complete_node(parsed));
        }
        SUBCASE("far past what the YAML parser itself accepts")
        {
            auto parsed = parse("a: " + std::string(100000, '[') + std::string(100000, ']') + "\n");
            REQUIRE_FALSE(parsed.diagnostics.empty());
            CHECK(parsed.kube_objects.empty());
        }
    }

    TEST_CASE("loader: a stray ',' where a document starts is a syntax error, not endless empty documents")
    {
        // yaml-cpp 0.7 alone loops here, allocating until memory runs out.
        for (const char* text : {",", "- a\n,\n", "{a: 1},", "[a]\n---\n,"}) {
            CAPTURE(text);
            auto parsed = parse(text);
            REQUIRE(parsed.diagnostics.size() == 1);
            CHECK(parsed.diagnostics[0].reason == "YAML syntax error: unexpected ','");
            CHECK(no_complete_node(parsed));
        }
        // The cheap pre-check that skips the guard pass for most files must
        // never skip it where yaml-cpp would stall: each of these returns.
        for (const char* text : {"-,", "&a,", "&a),", "a,", "!t,", "*a,", "? ,", "key: x\n,", "\xEF\xBB\xBF,",
                                 "a: b\n---\n&x ,", "[a]\n,", "\"q\",", "'q',", "a: |\n  x\n,", "\t,"}) {
            CAPTURE(text);
            auto parsed = parse(text);
            CHECK(no_complete_node(parsed));
        }
        auto ok = parse("a: [1, 2]\n---\n{b: c, d: e}\n---\n---\n");
        CHECK_FALSE(ok.diagnostics.empty());  // documents of no kind, but no syntax error
        for (const auto& d : ok.diagnostics) {
            CHECK(d.reason.find("syntax") == std::string::npos);
        }
    }

    TEST_CASE("loader: a file that is not UTF-8 is rejected at the offending byte")
    {
        auto parsed = parse("apiVersion: v1\nkind: ConfigMap\nmet\xff"
                            "data: {name: a}\n");
        REQUIRE(parsed.diagnostics.size() == 1);
        CHECK(parsed.diagnostics[0].line == 3);
        CHECK(parsed.diagnostics[0].column == 4);
        CHECK(parsed.diagnostics[0].reason == "not valid UTF-8");
        CHECK(parsed.kube_objects.empty());

        auto overlong = parse("a: \xc0\xaf\n"); // an overlong '/'
        REQUIRE(overlong.diagnostics.size() == 1);
        CHECK(overlong.diagnostics[0].column == 4);

        auto ok = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xc3\xa9}\n");
        CHECK(ok.diagnostics.empty());
        REQUIRE(ok.kube_objects.size() == 1);
        CHECK(ok.kube_objects[0].object.name == "caf\xc3\xa9");
    }

    TEST_CASE("loader: a file over the size limit is rejected without parsing")
    {
        SUBCASE("the default limit (16 MiB)")
        {
            std::string big = "# " + std::string(16U * 1024U * 1024U, 'x') + "\n";
            auto parsed = parse(big);
            REQUIRE(parsed.diagnostics.size() == 1);
            CHECK(parsed.diagnostics[0].line == 1);
            CHECK(parsed.diagnostics[0].reason.find("limit") != std::string::npos);
            CHECK(parsed.diagnostics[0].reason.find("16777216") != std::string::npos);
        }
        SUBCASE("a small configured limit says how large the file is")
        {
            YamlLimits limits;
            limits.max_file_bytes = 1000;
            auto parsed =
                parse(node_yaml("node-01", "aa:bb:cc:dd:ee:01", "10.0.0.1") + "# " + std::string(1000, 'x'), limits);
            REQUIRE(parsed.diagnostics.size() == 1);
            INFO(parsed.diagnostics[0].reason);
            CHECK(parsed.diagnostics[0].reason.find("1000 bytes") != std::string::npos);
            CHECK(no_complete_node(parsed));
        }
    }

    TEST_CASE("loader: a symlink is rejected without being read")
    {
        Repo repo;
        repo.put("nodes/real.yaml", node_yaml("node-01", "aa:bb:cc:dd:ee:01", "10.0.0.1"));
        std::vector<RepoFile> files = repo.files();
        RepoFile link;
        link.path = "nodes/link.yaml";
        link.id = "l1";
        link.symlink = true;
        files.push_back(link);
        bool read_link = false;
        RevisionLoader loader;
        auto result = loader.load(files, [&](const RepoFile& f) -> std::expected<std::string, std::string> {
            if (f.path == "nodes/link.yaml") {
                read_link = true;
                return node_yaml("node-02", "aa:bb:cc:dd:ee:02", "10.0.0.2");
            }
            return repo.content.at(f.path);
        });
        auto errors = errors_of(result);
        CHECK_FALSE(read_link);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].file == "nodes/link.yaml");
        CHECK(errors[0].reason.find("symbolic links are not followed") != std::string::npos);
    }

    TEST_CASE("loader: a file that cannot be read rejects the revision")
    {
        RevisionLoader loader;
        RepoFile f;
        f.path = "gone.yaml";
        f.id = "x";
        auto result = loader.load({f}, [](const RepoFile&) -> std::expected<std::string, std::string> {
            return std::unexpected("permission denied");
        });
        auto errors = errors_of(result);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].reason == "cannot read: permission denied");
    }

    TEST_CASE("loader: a NodeClass is merged under its nodes")
    {
        Repo repo;
        repo.put("classes/dell.yaml", "apiVersion: metalsync.dev/v1alpha1\n"
                                      "kind: NodeClass\n"
                                      "metadata: {name: dell}\n"
                                      "spec:\n"
                                      "  bmc: {driver: ipmi, credentials: rack1-bmc, port: 6230}\n"
                                      "  interfaces: {boot: ipxe, deploy: direct}\n"
                                      "  properties:\n"
                                      "    cpu_arch: x86_64\n"
                                      "    capabilities: 'boot_mode:uefi'\n"
                                      "    memory_mb: 131072\n"
                                      "  resourceClass: baremetal\n"
                                      "  inspect: true\n"
                                      "  expect: {cpus: 32, disks: 2}\n"
                                      "  provisionState: active\n"
                                      "  image:\n"
                                      "    source: http://images.example/ubuntu.qcow2\n"
                                      "    checksum: sha256:" +
                                          std::string(64, 'a') + "\n");
        repo.put("nodes/n1.yaml", "apiVersion: metalsync.dev/v1alpha1\n"
                                  "kind: Node\n"
                                  "metadata: {name: node-01}\n"
                                  "spec:\n"
                                  "  class: dell\n"
                                  "  bmc: {address: 10.0.0.1}\n"
                                  "  interfaces: {boot: pxe}\n"
                                  "  properties:\n"
                                  "    capabilities: 'boot_mode:bios'\n"
                                  "    local_gb: 400\n"
                                  "  resourceClass: gpu\n"
                                  "  expect: {cpus: 64}\n"
                                  "  ports: [{mac: 'aa:bb:cc:dd:ee:01'}]\n");
        repo.put("nodes/n2.yaml", "apiVersion: metalsync.dev/v1alpha1\n"
                                  "kind: Node\n"
                                  "metadata: {name: node-02}\n"
                                  "spec:\n"
                                  "  class: dell\n"
                                  "  bmc: {address: 10.0.0.2, driver: redfish, credentials: other}\n"
                                  "  provisionState: available\n"
                                  "  inspect: false\n");
        auto result = load(repo);
        const auto& state = state_of(result);
        REQUIRE(state.classes.contains("dell"));
        const auto& n1 = state.nodes.at("node-01");
        CHECK(n1.class_name == "dell");
        CHECK(n1.bmc.driver == "ipmi");
        CHECK(n1.bmc.credentials == "rack1-bmc");
        CHECK(n1.bmc.port == 6230);
        CHECK(n1.properties == nlohmann::json{{"cpu_arch", "x86_64"},
                                              {"capabilities", "boot_mode:bios"},
                                              {"memory_mb", 131072},
                                              {"local_gb", 400}});
        CHECK(n1.interfaces == std::map<std::string, std::string>{{"boot", "pxe"}, {"deploy", "direct"}});
        CHECK(n1.resource_class == "gpu");
        CHECK(n1.inspect);
        CHECK(n1.expect.cpus == 64);
        CHECK(n1.expect.disks == 2);
        CHECK(n1.provision_state == ProvisionGoal::active);
        REQUIRE(n1.image.has_value());
        CHECK(n1.image->source == "http://images.example/ubuntu.qcow2");
        CHECK(n1.image->checksum == "sha256:" + std::string(64, 'a'));

        const auto& n2 = state.nodes.at("node-02");
        CHECK(n2.bmc.driver == "redfish");
        CHECK(n2.bmc.credentials == "other");
        CHECK(n2.provision_state == ProvisionGoal::available);
        CHECK_FALSE(n2.inspect);
        CHECK(n2.resource_class == "baremetal");
        CHECK(n2.ports.empty());
    }

    TEST_CASE("loader: driver, credentials and image are checked after the class merge")
    {
        Repo repo;
        repo.put("classes/c.yaml", "apiVersion: metalsync.dev/v1alpha1\nkind: NodeClass\nmetadata: {name: bare}\n"
                                   "spec: {resourceClass: baremetal, provisionState: active}\n");
        repo.put("nodes/a.yaml", "apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: a}\n"
                                 "spec:\n  class: bare\n  bmc: {address: 10.0.0.1}\n");
        repo.put("nodes/b.yaml", "apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: b}\n"
                                 "spec:\n  class: missing\n  bmc: {address: 10.0.0.2, driver: fake-hardware}\n");
        auto errors = errors_of(load(repo));
        INFO(dump(errors));
        CHECK(has(errors, "nodes/a.yaml", "spec.bmc.driver", "NodeClass 'bare'"));
        CHECK(has(errors, "nodes/a.yaml", "spec.image", "provisionState active needs an image"));
        CHECK(has(errors, "nodes/b.yaml", "spec.class", "NodeClass 'missing' does not exist"));
        CHECK(errors.size() == 3);
    }

    TEST_CASE("loader: duplicate MAC across files names both places")
    {
        Repo repo;
        repo.put("nodes/a.yaml", node_yaml("node-a", "aa:bb:cc:dd:ee:01", "10.0.0.1"));
        repo.put("nodes/b.yaml", node_yaml("node-b", "AA:BB:CC:DD:EE:01", "10.0.0.2"));
        auto errors = errors_of(load(repo));
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].to_string() ==
              "nodes/b.yaml:11:12: spec.ports[0].mac: MAC aa:bb:cc:dd:ee:01 is already claimed "
              "by node 'node-a' at nodes/a.yaml:11");
    }

    TEST_CASE("loader: cross-document conflicts: node names, BMC addresses, classes, policies, Kubernetes objects")
    {
        Repo repo;
        repo.put("a.yaml", node_yaml("node-a", "aa:bb:cc:dd:ee:01", "10.0.0.1"));
        repo.put("b.yaml", node_yaml("node-a", "aa:bb:cc:dd:ee:02", "10.0.0.2"));
        // Same BMC: the ipmi default port 623 written out.
        repo.put("c.yaml", "apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: node-c}\n"
                           "spec:\n  bmc: {driver: ipmi, address: 10.0.0.1, port: 623, credentials: x}\n");
        repo.put("d.yaml", "apiVersion: metalsync.dev/v1alpha1\nkind: Policy\nmetadata: {name: one}\nspec: {}\n---\n"
                           "apiVersion: metalsync.dev/v1alpha1\nkind: Policy\nmetadata: {name: two}\nspec: {}\n---\n"
                           "apiVersion: metalsync.dev/v1alpha1\nkind: NodeClass\nmetadata: {name: k}\nspec: {}\n---\n"
                           "apiVersion: metalsync.dev/v1alpha1\nkind: NodeClass\nmetadata: {name: k}\nspec: {}\n");
        repo.put("e.yaml",
                 "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\n---\n"
                 "apiVersion: apps/v1beta2\nkind: Deployment\nmetadata: {name: web, namespace: default}\n---\n"
                 "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: other}\n");
        auto errors = errors_of(load(repo));
        INFO(dump(errors));
        CHECK(has(errors, "b.yaml", "metadata.name", "node 'node-a' is already declared at a.yaml:4"));
        CHECK(has(errors, "c.yaml", "spec.bmc.address", "BMC 10.0.0.1:623 is already claimed by node 'node-a'"));
        CHECK(has(errors, "d.yaml", "metadata.name",
                  "a repository holds one Policy; 'one' is already declared at d.yaml:3"));
        CHECK(has(errors, "d.yaml", "metadata.name", "NodeClass 'k' is already declared at d.yaml:13"));
        CHECK(has(errors, "e.yaml", "metadata.name", "Deployment 'default/web' is already declared at e.yaml:3"));
        CHECK(errors.size() == 5);
    }

    TEST_CASE("loader: the cache parses only files whose id changed")
    {
        Repo repo;
        for (int i = 1; i <= 5; ++i) {
            auto n = std::to_string(i);
            repo.put("nodes/n" + n + ".yaml", node_yaml("node-0" + n, "aa:bb:cc:dd:ee:0" + n, "10.0.0." + n), "id" + n);
        }
        RevisionLoader loader;
        auto first = loader.load(repo.files(), repo.reader());
        REQUIRE(first.has_value());
        CHECK(loader.last_stats().files == 5);
        CHECK(loader.last_stats().parsed == 5);
        CHECK(repo.reads == 5);

        auto second = loader.load(repo.files(), repo.reader());
        REQUIRE(second.has_value());
        CHECK(loader.last_stats().parsed == 0);
        CHECK(repo.reads == 5);

        repo.put("nodes/n3.yaml", node_yaml("node-03", "aa:bb:cc:dd:ee:03", "10.0.0.33"), "id3b");
        auto third = loader.load(repo.files(), repo.reader());
        REQUIRE(third.has_value());
        CHECK(loader.last_stats().parsed == 1);
        CHECK(repo.reads == 6);
        CHECK(third->nodes.at("node-03").bmc.address == "10.0.0.33");

        // A cached file with errors still rejects the revision on the next load.
        repo.put("nodes/n4.yaml", "kind: Node\n", "id4b");
        CHECK_FALSE(loader.load(repo.files(), repo.reader()).has_value());
        CHECK(loader.last_stats().parsed == 1);
        auto again = loader.load(repo.files(), repo.reader());
        CHECK_FALSE(again.has_value());
        CHECK(loader.last_stats().parsed == 0);

        // Same id under another path is another file.
        repo.ids.erase("nodes/n4.yaml");
        repo.put("nodes/renamed.yaml", node_yaml("node-04", "aa:bb:cc:dd:ee:04", "10.0.0.4"), "id4b");
        auto renamed = loader.load(repo.files(), repo.reader());
        CHECK(renamed.has_value());
        CHECK(loader.last_stats().parsed == 1);
    }

    TEST_CASE("loader: cross-document checks span cached and re-parsed files")
    {
        // The parse cache serves unchanged files; every check across
        // documents still runs over the whole revision, whichever side of a
        // conflict was parsed just now.
        Repo repo;
        repo.put("nodes/a.yaml", node_yaml("node-a", "aa:bb:cc:dd:ee:01", "10.0.0.1"), "a1");
        repo.put("nodes/b.yaml", node_yaml("node-b", "aa:bb:cc:dd:ee:02", "10.0.0.2"), "b1");
        RevisionLoader loader;
        REQUIRE(loader.load(repo.files(), repo.reader()).has_value());

        SUBCASE("a re-parsed file declares a cached file's node name, MAC and BMC")
        {
            repo.put("nodes/b.yaml", node_yaml("node-a", "AA:BB:CC:DD:EE:01", "10.0.0.1"), "b2");
            auto errors = errors_of(loader.load(repo.files(), repo.reader()));
            CHECK(loader.last_stats().parsed == 1);
            INFO(dump(errors));
            CHECK(has(errors, "nodes/b.yaml", "metadata.name", "node 'node-a' is already declared at nodes/a.yaml:4"));
            CHECK(errors.size() == 1);  // a node whose name is taken is not checked further

            repo.put("nodes/b.yaml", node_yaml("node-b", "AA:BB:CC:DD:EE:01", "10.0.0.1"), "b3");
            errors = errors_of(loader.load(repo.files(), repo.reader()));
            INFO(dump(errors));
            CHECK(has(errors, "nodes/b.yaml", "spec.ports[0].mac",
                      "MAC aa:bb:cc:dd:ee:01 is already claimed by node 'node-a' at nodes/a.yaml:11"));
            CHECK(has(errors, "nodes/b.yaml", "spec.bmc.address",
                      "BMC 10.0.0.1:623 is already claimed by node 'node-a' at nodes/a.yaml:8"));
            CHECK(errors.size() == 2);
        }
        SUBCASE("a new file earlier in path order takes a cached file's names: the cached one is the duplicate")
        {
            repo.put("nodes/0.yaml", node_yaml("node-b", "aa:bb:cc:dd:ee:02", "10.0.0.2"), "z1");
            auto errors = errors_of(loader.load(repo.files(), repo.reader()));
            CHECK(loader.last_stats().parsed == 1);
            INFO(dump(errors));
            CHECK(has(errors, "nodes/b.yaml", "metadata.name", "node 'node-b' is already declared at nodes/0.yaml:4"));
            CHECK(errors.size() == 1);
        }
        SUBCASE("the conflict is resolved in the re-parsed file: the revision loads again")
        {
            repo.put("nodes/b.yaml", node_yaml("node-a", "aa:bb:cc:dd:ee:01", "10.0.0.1"), "b2");
            CHECK_FALSE(loader.load(repo.files(), repo.reader()).has_value());
            repo.put("nodes/b.yaml", node_yaml("node-b2", "aa:bb:cc:dd:ee:03", "10.0.0.3"), "b3");
            auto state = loader.load(repo.files(), repo.reader());
            REQUIRE(state.has_value());
            CHECK(state->nodes.size() == 2);
            CHECK(state->nodes.contains("node-b2"));
            CHECK_FALSE(state->nodes.contains("node-b"));
        }
    }

    TEST_CASE("loader: a changed NodeClass re-resolves every node of that class, cached or not")
    {
        const std::string cls = "apiVersion: metalsync.dev/v1alpha1\nkind: NodeClass\nmetadata: {name: dell}\n"
                                "spec:\n  bmc: {driver: ipmi, credentials: dell-bmc}\n  properties: {cpu_arch: x86_64}\n";
        auto node = [](const std::string& name, const std::string& mac, const std::string& address,
                       const std::string& extra = "") {
            return "apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: " + name +
                   "}\nspec:\n  class: dell\n  bmc: {address: " + address + "}\n  ports: [{mac: '" + mac + "'}]\n" +
                   extra;
        };
        Repo repo;
        repo.put("classes/dell.yaml", cls, "c1");
        repo.put("nodes/a.yaml", node("a", "aa:bb:cc:dd:ee:01", "10.0.0.1"), "a1");
        repo.put("nodes/b.yaml", node("b", "aa:bb:cc:dd:ee:02", "10.0.0.2", "  properties: {cpu_arch: aarch64}\n"),
                 "b1");
        RevisionLoader loader;
        auto first = loader.load(repo.files(), repo.reader());
        const auto& one = state_of(first);
        CHECK(one.nodes.at("a").bmc.port == std::nullopt);
        CHECK(one.nodes.at("a").properties == nlohmann::json{{"cpu_arch", "x86_64"}});
        CHECK(one.nodes.at("b").properties == nlohmann::json{{"cpu_arch", "aarch64"}});

        // Only the class file changes: both node files come from the cache.
        repo.put("classes/dell.yaml",
                 "apiVersion: metalsync.dev/v1alpha1\nkind: NodeClass\nmetadata: {name: dell}\n"
                 "spec:\n  bmc: {driver: ipmi, credentials: dell-bmc-2, port: 6230}\n"
                 "  properties: {cpu_arch: x86_64, memory_mb: 1024}\n",
                 "c2");
        auto second = loader.load(repo.files(), repo.reader());
        CHECK(loader.last_stats().parsed == 1);
        const auto& two = state_of(second);
        for (const std::string name : {"a", "b"}) {
            CAPTURE(name);
            CHECK(two.nodes.at(name).bmc.credentials == "dell-bmc-2");
            CHECK(two.nodes.at(name).bmc.port == 6230);
            CHECK(two.nodes.at(name).properties.at("memory_mb") == 1024);
        }
        CHECK(two.nodes.at("b").properties.at("cpu_arch") == "aarch64");  // the node's own value still wins

        // A class change that makes cached nodes invalid rejects the revision at those nodes.
        repo.put("classes/dell.yaml",
                 "apiVersion: metalsync.dev/v1alpha1\nkind: NodeClass\nmetadata: {name: dell}\n"
                 "spec:\n  bmc: {driver: redfish}\n",
                 "c3");
        auto errors = errors_of(loader.load(repo.files(), repo.reader()));
        CHECK(loader.last_stats().parsed == 1);
        INFO(dump(errors));
        CHECK(has(errors, "nodes/a.yaml", "spec.bmc.credentials", "NodeClass 'dell'"));
        CHECK(has(errors, "nodes/b.yaml", "spec.bmc.credentials", "NodeClass 'dell'"));
        CHECK(errors.size() == 2);

        // The class renamed away: its nodes name a class that no longer exists.
        repo.put("classes/dell.yaml", "apiVersion: metalsync.dev/v1alpha1\nkind: NodeClass\nmetadata: {name: hpe}\nspec: {}\n",
                 "c4");
        errors = errors_of(loader.load(repo.files(), repo.reader()));
        INFO(dump(errors));
        CHECK(has(errors, "nodes/a.yaml", "spec.class", "NodeClass 'dell' does not exist"));
        CHECK(has(errors, "nodes/b.yaml", "spec.class", "NodeClass 'dell' does not exist"));
        CHECK(errors.size() == 2);
    }

    TEST_CASE("loader: a node whose class is missing still holds its name; BMCs differ by port and system id")
    {
        Repo repo;
        repo.put("nodes/a.yaml", "apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: x}\n"
                                 "spec:\n  class: missing\n  bmc: {address: 10.0.0.1}\n");
        repo.put("nodes/b.yaml", node_yaml("x", "aa:bb:cc:dd:ee:01", "10.0.0.2"));
        // Redfish: the same address with another port or system id is another BMC.
        auto redfish = [](const std::string& name, const std::string& bmc) {
            return "apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: " + name +
                   "}\nspec:\n  bmc: {driver: redfish, credentials: c, address: 10.0.0.9" + bmc + "}\n";
        };
        repo.put("nodes/r1.yaml", redfish("r1", ", systemId: /redfish/v1/Systems/1"));
        repo.put("nodes/r2.yaml", redfish("r2", ", systemId: /redfish/v1/Systems/2"));
        repo.put("nodes/r3.yaml", redfish("r3", ", port: 8443, systemId: /redfish/v1/Systems/1"));
        repo.put("nodes/r4.yaml", redfish("r4", ", port: 443, systemId: /redfish/v1/Systems/1"));
        repo.put("nodes/r5.yaml", redfish("r5", ""));
        auto errors = errors_of(load(repo));
        INFO(dump(errors));
        CHECK(has(errors, "nodes/a.yaml", "spec.class", "NodeClass 'missing' does not exist"));
        CHECK(has(errors, "nodes/b.yaml", "metadata.name", "node 'x' is already declared at nodes/a.yaml:3"));
        CHECK(has(errors, "nodes/r4.yaml", "spec.bmc.address",
                  "BMC 10.0.0.9:443/redfish/v1/Systems/1 is already claimed by node 'r1' at nodes/r1.yaml:5"));
        CHECK(errors.size() == 3);
    }

    TEST_CASE("loader: a multi-document file with empty documents")
    {
        auto parsed = parse("# nodes of rack 1\n---\n---\n# only a comment\n---\n" +
                            node_yaml("node-01", "aa:bb:cc:dd:ee:01", "10.0.0.1") + "---\n" +
                            node_yaml("node-02", "aa:bb:cc:dd:ee:02", "10.0.0.2") + "---\n");
        INFO(dump(parsed.diagnostics));
        CHECK(parsed.diagnostics.empty());
        REQUIRE(parsed.nodes.size() == 2);
        CHECK(parsed.nodes[0].name == "node-01");
        CHECK(parsed.nodes[0].source.line == 6);
        CHECK(parsed.nodes[1].name == "node-02");
        CHECK(parsed.nodes[1].source.line == 18);

        auto scalar_doc = parse("--- just a string\n");
        REQUIRE(scalar_doc.diagnostics.size() == 1);
        CHECK(scalar_doc.diagnostics[0].reason == "a document must be a mapping, got a string");
    }

    TEST_CASE("loader: Kubernetes objects are kept verbatim")
    {
        Repo repo;
        repo.put("clusters/c.yaml", "apiVersion: cluster.x-k8s.io/v1beta1\n"
                                    "kind: Cluster\n"
                                    "metadata:\n"
                                    "  name: baremetal-cluster\n"
                                    "  namespace: default\n"
                                    "  labels: {cluster.x-k8s.io/cluster-name: baremetal-cluster}\n"
                                    "spec:\n"
                                    "  paused: false\n"
                                    "  clusterNetwork:\n"
                                    "    pods: {cidrBlocks: [192.168.0.0/16]}\n"
                                    "    apiServerPort: 6443\n"
                                    "  topology: ~\n"
                                    "  note: on\n"
                                    "  ratio: 0.5\n"
                                    "  hex: 0x1F\n"
                                    "  quoted: '42'\n"
                                    "  script: |\n"
                                    "    #!/bin/sh\n"
                                    "    echo hi\n"
                                    "---\n"
                                    "apiVersion: v1\n"
                                    "kind: Namespace\n"
                                    "metadata: {name: capi-system}\n");
        auto result = load(repo);
        const auto& state = state_of(result);
        REQUIRE(state.kube_objects.size() == 2);
        const auto& c = state.kube_objects[0];
        CHECK(c.api_version == "cluster.x-k8s.io/v1beta1");
        CHECK(c.kind == "Cluster");
        CHECK(c.name == "baremetal-cluster");
        CHECK(c.namespace_ == "default");
        CHECK(c.source.file == "clusters/c.yaml");
        CHECK(c.source.line == 1);
        const auto expected = nlohmann::json::parse(R"({
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "kind": "Cluster",
        "metadata": {"name": "baremetal-cluster", "namespace": "default",
                     "labels": {"cluster.x-k8s.io/cluster-name": "baremetal-cluster"}},
        "spec": {"paused": false,
                 "clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/16"]}, "apiServerPort": 6443},
                 "topology": null, "note": "on", "ratio": 0.5, "hex": 31, "quoted": "42",
                 "script": "#!/bin/sh\necho hi\n"}
    })");
        CHECK(c.body == expected);
        const auto& ns = state.kube_objects[1];
        CHECK(ns.kind == "Namespace");
        CHECK(ns.namespace_.empty());
        CHECK(ns.source.line == 21);
        CHECK(ns.body ==
              nlohmann::json{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "capi-system"}}}});
    }

    TEST_CASE("loader: metalsync.dev typos, other versions and unknown kinds are errors, never passed on")
    {
        struct Case {
            std::string api_version;
            std::string kind;
            std::string field;
            std::string reason;
        };
        const std::vector<Case> cases = {
            {"metalsync.dve/v1alpha1", "Node", "apiVersion", "unknown API group 'metalsync.dve'; did you mean"},
            {"metalsnc.dev/v1alpha1", "Node", "apiVersion", "did you mean metalsync.dev/v1alpha1?"},
            {"metalsync/v1alpha1", "Node", "apiVersion", "unknown API group 'metalsync'"},
            {"metalsync.dev/v1beta1", "Node", "apiVersion", "unsupported version 'metalsync.dev/v1beta1'"},
            {"metalsync.dev/v1alpha1", "Nodes", "kind", "unknown kind 'Nodes'"},
            {"metalsync.dev/v1alpha1", "Cluster", "kind", "unknown kind 'Cluster'"},
        };
        for (const auto& c : cases) {
            INFO(c.api_version << " " << c.kind);
            auto parsed =
                parse("apiVersion: " + c.api_version + "\nkind: " + c.kind + "\nmetadata: {name: a}\nspec: {}\n");
            REQUIRE(parsed.diagnostics.size() == 1);
            CHECK(parsed.diagnostics[0].field == c.field);
            CHECK(parsed.diagnostics[0].line == (c.field == "kind" ? 2 : 1));
            CHECK(parsed.diagnostics[0].column == (c.field == "kind" ? 7 : 13));
            CHECK(parsed.diagnostics[0].reason.find(c.reason) != std::string::npos);
            CHECK(parsed.kube_objects.empty());
            CHECK(no_complete_node(parsed));
        }
    }

    TEST_CASE("loader: one pass reports a document's own errors and the clashes it has with others")
    {
        Repo repo;
        // a.yaml: a bad boolean of its own, and b.yaml's MAC and BMC.
        repo.put("a.yaml", node_yaml("node-a", "aa:bb:cc:dd:ee:01", "10.0.0.1", "  inspect: yes\n"));
        repo.put("b.yaml", node_yaml("node-b", "aa:bb:cc:dd:ee:01", "10.0.0.1"));
        auto result = load(repo);
        REQUIRE_FALSE(result.has_value());
        std::vector<std::string> fields;
        for (const auto& d : result.error()) fields.push_back(d.file + ":" + d.field);
        INFO(fields.size());
        CHECK(std::find(fields.begin(), fields.end(), "a.yaml:spec.inspect") != fields.end());
        CHECK(std::find(fields.begin(), fields.end(), "b.yaml:spec.ports[0].mac") != fields.end());
        CHECK(std::find(fields.begin(), fields.end(), "b.yaml:spec.bmc.address") != fields.end());
        CHECK(fields.size() == 3);  // nothing made up about what a.yaml's error left out
    }

    TEST_CASE("loader: metalsync's provider kinds are checked against their CRDs, with file and line")
    {
        const std::string good =
            "apiVersion: infrastructure.cluster.x-k8s.io/v1alpha1\n"
            "kind: MetalsyncMachineTemplate\n"
            "metadata: {name: workers, namespace: default}\n"
            "spec:\n"
            "  template:\n"
            "    spec:\n"
            "      hostSelector:\n"
            "        matchLabels: {metalsync.dev/pool: workers}\n"
            "        matchExpressions:\n"
            "          - {key: gpu, operator: Exists}\n"
            "      image:\n"
            "        url: http://images.example/ubuntu.qcow2\n"
            "        checksum: sha256:" + std::string(64, 'a') + "\n"
            "        diskFormat: qcow2\n";
        auto parsed = parse(good);
        CHECK(parsed.diagnostics.empty());
        REQUIRE(parsed.kube_objects.size() == 1);

        struct Case {
            std::string from;
            std::string to;
            std::string field;
            int line;
            std::string reason;
        };
        const std::vector<Case> cases = {
            {"operator: Exists", "operator: in", "spec.template.spec.hostSelector.matchExpressions[0].operator", 10,
             "In"},
            {"operator: Exists", "operator: In", "spec.template.spec.hostSelector.matchExpressions[0].values", 10,
             "needs at least one value"},
            {"diskFormat: qcow2", "diskFormat: qcow", "spec.template.spec.image.diskFormat", 14, "qcow2"},
            {"checksum: sha256:", "checksum: sha1:", "spec.template.spec.image.checksum", 13, "checksum"},
            {"        diskFormat: qcow2\n", "        diskFormat: qcow2\n      imgae: {}\n", "spec.template.spec.imgae", 15,
             ""},
        };
        for (const auto& c : cases) {
            std::string text = good;
            text.replace(text.find(c.from), c.from.size(), c.to);
            INFO(text);
            auto bad = parse(text);
            REQUIRE(bad.diagnostics.size() == 1);
            CHECK(bad.diagnostics[0].field == c.field);
            CHECK(bad.diagnostics[0].line == c.line);
            CHECK(bad.diagnostics[0].reason.find(c.reason) != std::string::npos);
        }
        auto cluster = parse("apiVersion: infrastructure.cluster.x-k8s.io/v1alpha1\nkind: MetalsyncCluster\n"
                             "metadata: {name: c}\nspec:\n  controlPlaneEndpoint: {host: 192.0.2.1, port: 70000}\n");
        REQUIRE(cluster.diagnostics.size() == 1);
        CHECK(cluster.diagnostics[0].field == "spec.controlPlaneEndpoint.port");
        CHECK(cluster.diagnostics[0].line == 5);
        auto typo = parse("apiVersion: infrastructure.cluster.x-k8s.io/v1alpha1\nkind: MetalsyncMachin\n"
                          "metadata: {name: c}\nspec: {}\n");
        REQUIRE(typo.diagnostics.size() == 1);
        CHECK(typo.diagnostics[0].field == "kind");
    }

    TEST_CASE("loader: a rejected revision yields no desired state at all")
    {
        Repo repo;
        repo.put("a.yaml", node_yaml("node-a", "aa:bb:cc:dd:ee:01", "10.0.0.1"));
        repo.put("b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n");
        repo.put("c.yaml",
                 "apiVersion: metalsync.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {prune: true}\n");
        repo.put("z.yaml", "apiVersion: metalsync.dev/v1alpha1\nkind: Policy\nmetadata: {name: q}\n"
                           "spec: {maxRetries: many}\n");
        RevisionLoader loader;
        auto result = loader.load(repo.files(), repo.reader());
        REQUIRE_FALSE(result.has_value());
        REQUIRE(result.error().size() == 1);
        CHECK(result.error()[0].file == "z.yaml");
        CHECK(result.error()[0].field == "spec.maxRetries");

        repo.put("z.yaml", "# fixed\n", "v2");
        auto fixed = loader.load(repo.files(), repo.reader());
        const auto& state = state_of(fixed);
        CHECK(state.nodes.size() == 1);
        CHECK(state.kube_objects.size() == 1);
        CHECK(state.has_policy);
        CHECK(state.policy.prune);
    }

    TEST_CASE("loader: format checks")
    {
        CHECK(is_mac("aa:bb:cc:dd:ee:ff"));
        CHECK(is_mac("AA:BB:CC:DD:EE:FF"));
        CHECK_FALSE(is_mac("aa:bb:cc:dd:ee"));
        CHECK_FALSE(is_mac("aa-bb-cc-dd-ee-ff"));
        CHECK(is_host("192.168.1.100"));
        CHECK_FALSE(is_host("192.168.1.256"));
        CHECK_FALSE(is_host("192.168.1"));
        CHECK(is_host("fe80::1"));
        CHECK(is_host("2001:db8::192.168.0.1"));
        CHECK_FALSE(is_host("1::2::3"));
        CHECK(is_host("bmc-01.rack1.example"));
        CHECK_FALSE(is_host("http://bmc"));
        CHECK(is_checksum("sha256:" + std::string(64, '0')));
        CHECK_FALSE(is_checksum("sha256:" + std::string(63, '0')));
        CHECK(is_credentials_name("rack1-bmc"));
        CHECK_FALSE(is_credentials_name("../etc/shadow"));
        CHECK_FALSE(is_credentials_name(".hidden"));
        CHECK_FALSE(is_credentials_name("a..b"));
        CHECK(is_object_name("node-01"));
        CHECK_FALSE(is_object_name("Node_01"));
    }

} // TEST_SUITE
