// The store's tables through its API: revisions, desired objects, observed
// state, journal, events, inspection, node status, inventory, meta.

#include <sqlite3.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "store/observed_json.hpp"
#include "store/store.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;
using metalsync::test::TempDir;

namespace {

template <typename T>
T value_of(std::expected<T, StoreError> result)
{
    if (!result) {
        FAIL("store call failed: " << result.error().message);
    }
    return std::move(*result);
}

void require_ok(const std::expected<void, StoreError>& result)
{
    if (!result) {
        FAIL("store call failed: " << result.error().message);
    }
}

std::int64_t raw_count(const std::filesystem::path& path, const std::string& sql)
{
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    const auto n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close_v2(db);
    return n;
}

// g++ 12 warns (-Wmissing-field-initializers) on designated initializers
// that leave members out, so the tests fill structs field by field.
RevisionRecord accepted(const std::string& commit, std::int64_t seen)
{
    RevisionRecord record;
    record.commit_id = commit;
    record.author_name = "Alice";
    record.author_email = "alice@example.org";
    record.committed_at = seen - 5;
    record.seen_at = seen;
    record.summary = "2 nodes";
    return record;
}

EventFilter filter(std::optional<std::string> kind, std::optional<std::string> object,
                   std::optional<std::string> name = {}, std::optional<double> since = {}, int limit = 100)
{
    EventFilter f;
    f.object_kind = std::move(kind);
    f.object_name = std::move(object);
    f.name = std::move(name);
    f.since = since;
    f.limit = limit;
    return f;
}

ObservedNode full_node()
{
    ObservedNode node;
    node.uuid = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
    node.name = "node-01";
    node.driver = "ipmi";
    node.provision_state = "clean wait";
    node.target_provision_state = "available";
    node.instance_uuid = "uid-of-a-metalsyncmachine";
    node.power_state = "power on";
    node.target_power_state = "power off";
    node.maintenance = true;
    node.maintenance_reason = "fan broken — ünïcode";
    node.last_error = "Timeout reached while cleaning the node.";
    node.reservation = "conductor-1";
    node.driver_info = {{"ipmi_address", "192.168.1.100"}, {"ipmi_port", 623}, {"ipmi_password", "******"},
                        {"ipmi_username", "admin"}, {"deploy_kernel", nullptr}};
    node.properties = {{"cpu_arch", "x86_64"}, {"memory_mb", 16000}, {"local_gb", 1.5},
                       {"big", 9007199254740993LL}, {"capabilities", "boot_mode:uefi"}};
    node.instance_info = {{"image_source", "http://images.example/u.qcow2"}, {"nested", {{"a", {1, 2, 3}}}}};
    node.extra = {{"metalsync.dev/revision", "3f2a1c9"}, {"empty", nlohmann::json::object()}};
    node.resource_class = "baremetal";
    node.interfaces = {{"boot", "pxe"}, {"deploy", "direct"}, {"power", "ipmitool"}};
    node.automated_clean = false;
    node.provision_updated_at = "2024-05-01T10:00:00+00:00";
    node.ports = {
        ObservedPort{"p-1", node.uuid, "aa:bb:cc:dd:ee:ff", false, "physnet1"},
        ObservedPort{"p-2", node.uuid, "aa:bb:cc:dd:ee:00", true, ""},
    };
    return node;
}

} // namespace

TEST_SUITE("store")
{
    TEST_CASE("store: revisions accepted and rejected, with their errors")
    {
        TempDir dir("store");
        auto store = value_of(Store::open(dir / "state.db"));
        CHECK_FALSE(value_of(store.last_revision()).has_value());
        CHECK_FALSE(value_of(store.last_accepted_revision()).has_value());

        require_ok(store.record_revision(accepted("aaa", 100)));
        RevisionRecord bad;
        bad.commit_id = "bbb";
        bad.author_name = "Bob";
        bad.author_email = "bob@example.org";
        bad.committed_at = 150;
        bad.seen_at = 100;
        bad.status = RevisionStatus::rejected;
        bad.errors = {"nodes/node-01.yaml:12:7: spec.bmc.port: must be between 1 and 65535",
                      "nodes/node-02.yaml:3:1: kind: unknown kind 'Nod' in metalsync.dev"};
        bad.summary = "2 errors";
        require_ok(store.record_revision(bad));

        auto last = value_of(store.last_revision());
        REQUIRE(last.has_value());
        CHECK(last->commit_id == "bbb");  // same seen_at second: order of recording decides
        CHECK(last->status == RevisionStatus::rejected);
        CHECK(last->errors == bad.errors);
        CHECK(last->author_name == "Bob");
        CHECK(last->author_email == "bob@example.org");
        CHECK(last->committed_at == 150);
        CHECK(last->summary == "2 errors");

        auto good = value_of(store.last_accepted_revision());
        REQUIRE(good.has_value());
        CHECK(good->commit_id == "aaa");
        CHECK(good->errors.empty());

        // Seen again: updated in place and newest again.
        require_ok(store.record_revision(accepted("aaa", 200)));
        auto list = value_of(store.list_revisions(10));
        REQUIRE(list.size() == 2);
        CHECK(list[0].commit_id == "aaa");
        CHECK(list[0].seen_at == 200);
        CHECK(list[1].commit_id == "bbb");
        CHECK(value_of(store.list_revisions(1)).size() == 1);
        CHECK(value_of(store.revision("bbb"))->errors.size() == 2);
        CHECK_FALSE(value_of(store.revision("zzz")).has_value());
    }

    TEST_CASE("store: desired objects are saved per revision and old revisions pruned")
    {
        TempDir dir("store");
        auto store = value_of(Store::open(dir / "state.db"));
        require_ok(store.record_revision(accepted("r0", 1)));
        const std::vector<DesiredObjectRow> rows = {
            {DesiredKind::node, "", "node-01", "hash-1", {{"bmc", {{"credentials", "rack1-bmc"}}}}},
            {DesiredKind::node_class, "", "default", "", {{"driver", "ipmi"}}},
            {DesiredKind::policy, "", "policy", "", {{"prune", true}}},
            {DesiredKind::kube_object, "capi", "cluster-a", "", {{"kind", "Cluster"}}},
        };
        require_ok(store.save_desired("r0", rows));
        auto loaded = value_of(store.load_desired("r0"));
        REQUIRE(loaded.size() == 4);
        CHECK(loaded[0].kind == DesiredKind::kube_object);  // ordered by kind text
        CHECK(loaded[0].namespace_ == "capi");
        CHECK(loaded[0].body == rows[3].body);
        CHECK(loaded[1].kind == DesiredKind::node);
        CHECK(loaded[1].spec_hash == "hash-1");
        CHECK(loaded[1].body == rows[0].body);

        // Saving again replaces the revision's rows.
        require_ok(store.save_desired("r0", {rows[0]}));
        CHECK(value_of(store.load_desired("r0")).size() == 1);

        for (int i = 1; i <= 11; ++i) {
            const auto commit = "r" + std::to_string(i);
            require_ok(store.record_revision(accepted(commit, 1 + i)));
            require_ok(store.save_desired(commit, {rows[0]}));
        }
        CHECK(value_of(store.load_desired("r0")).empty());  // older than the newest 10 accepted
        CHECK(value_of(store.load_desired("r1")).empty());
        CHECK(value_of(store.load_desired("r2")).size() == 1);
        CHECK(value_of(store.load_desired("r11")).size() == 1);
    }

    TEST_CASE("store: observed state round-trips losslessly")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        auto store = value_of(Store::open(path));

        ObservedState observed;
        observed.complete = true;
        observed.nodes["node-01"] = full_node();
        ObservedNode plain;
        plain.uuid = "uuid-2";
        plain.name = "node-02";
        plain.provision_state = "enroll";
        observed.nodes["node-02"] = plain;  // defaults, automated_clean unset

        SUBCASE("JSON alone")
        {
            const auto node = full_node();
            auto back = value_of(observed_node_from_json(to_json(node)));
            CHECK(to_json(back) == to_json(node));
            auto port = value_of(observed_port_from_json(to_json(node.ports[0])));
            CHECK(port.pxe_enabled == false);
            CHECK(port.physical_network == "physnet1");
            CHECK_FALSE(observed_node_from_json(nlohmann::json{{"maintenance", "yes"}}).has_value());
        }

        require_ok(store.replace_observed(observed, 1234.5));
        auto loaded = value_of(store.load_observed());
        CHECK(loaded.complete);
        REQUIRE(loaded.nodes.size() == 2);
        const auto& a = loaded.nodes.at("node-01");
        const auto expected = full_node();
        CHECK(a.uuid == expected.uuid);
        CHECK(a.name == expected.name);
        CHECK(a.driver == expected.driver);
        CHECK(a.provision_state == expected.provision_state);
        CHECK(a.target_provision_state == expected.target_provision_state);
        CHECK(a.power_state == expected.power_state);
        CHECK(a.target_power_state == expected.target_power_state);
        CHECK(a.maintenance == expected.maintenance);
        CHECK(a.maintenance_reason == expected.maintenance_reason);
        CHECK(a.last_error == expected.last_error);
        CHECK(a.reservation == expected.reservation);
        CHECK(a.driver_info == expected.driver_info);
        CHECK(a.properties == expected.properties);
        CHECK(a.properties["big"].get<std::int64_t>() == 9007199254740993LL);
        CHECK(a.instance_info == expected.instance_info);
        CHECK(a.extra == expected.extra);
        CHECK(a.resource_class == expected.resource_class);
        CHECK(a.interfaces == expected.interfaces);
        CHECK(a.automated_clean == std::optional<bool>(false));
        CHECK(a.provision_updated_at == expected.provision_updated_at);
        CHECK(a.instance_uuid == "uid-of-a-metalsyncmachine");
        REQUIRE(a.ports.size() == 2);
        CHECK(a.ports[0].uuid == "p-1");
        CHECK(a.ports[0].node_uuid == expected.uuid);
        CHECK(a.ports[0].mac == "aa:bb:cc:dd:ee:ff");
        CHECK(a.ports[0].pxe_enabled == false);
        CHECK(a.ports[0].physical_network == "physnet1");
        CHECK(a.ports[1].pxe_enabled == true);
        CHECK(to_json(a) == to_json(expected));
        const auto& b = loaded.nodes.at("node-02");
        CHECK_FALSE(b.automated_clean.has_value());
        CHECK(to_json(b) == to_json(plain));
        CHECK(value_of(store.observed_at()) == std::optional<double>(1234.5));
        CHECK(raw_count(path, "SELECT count(*) FROM observed_ports WHERE node_uuid = '" + expected.uuid + "'") == 2);

        // A new observation replaces the old one whole.
        ObservedState later;
        later.complete = false;
        later.nodes["node-02"] = plain;
        require_ok(store.replace_observed(later, 2000));
        loaded = value_of(store.load_observed());
        CHECK_FALSE(loaded.complete);
        CHECK(loaded.nodes.size() == 1);
        CHECK(loaded.nodes.count("node-02") == 1);
        CHECK(raw_count(path, "SELECT count(*) FROM observed_ports") == 0);
        CHECK(raw_count(path, "SELECT count(*) FROM observed_nodes") == 1);
    }

    TEST_CASE("store: the journal records actions and their outcome")
    {
        TempDir dir("store");
        auto store = value_of(Store::open(dir / "state.db"));
        JournalEntry entry;
        entry.object_kind = "Node";
        entry.object_name = "node-01";
        entry.verb = "manage";
        entry.params = {{"target", "manage"}};
        entry.revision = "r1";
        entry.author = "alice";
        entry.created_at = 10;
        const auto first = value_of(store.journal_add(entry));
        entry.verb = "provide";
        const auto second = value_of(store.journal_add(entry));
        JournalEntry apply;
        apply.object_kind = "KubeObject";
        apply.object_name = "node-01";
        apply.verb = "apply";
        apply.created_at = 11;
        const auto other = value_of(store.journal_add(apply));
        CHECK(second > first);
        CHECK(value_of(store.journal_unfinished()).size() == 3);

        require_ok(store.journal_mark_running(first, 12));
        require_ok(store.journal_finish(first, JournalState::failed, "409 NodeLocked", 13));
        auto got = value_of(store.journal_get(first));
        REQUIRE(got.has_value());
        CHECK(got->state == JournalState::failed);
        CHECK(got->result == "409 NodeLocked");
        CHECK(got->started_at == 12.0);
        CHECK(got->finished_at == 13.0);
        CHECK(got->revision == "r1");
        CHECK(got->author == "alice");

        auto again = store.journal_finish(first, JournalState::done, "", 14);
        REQUIRE_FALSE(again.has_value());
        CHECK(again.error().kind == StoreErrorKind::invalid_transition);
        CHECK(store.journal_mark_running(first, 14).error().kind == StoreErrorKind::invalid_transition);
        CHECK(store.journal_mark_running(9999, 14).error().kind == StoreErrorKind::not_found);
        CHECK_FALSE(store.journal_finish(second, JournalState::running, "", 14).has_value());

        require_ok(store.journal_cancel(second, "node removed from Git", 15));
        CHECK(value_of(store.journal_get(second))->state == JournalState::cancelled);
        CHECK(value_of(store.journal_get(second))->result == "node removed from Git");

        auto unfinished = value_of(store.journal_unfinished());
        REQUIRE(unfinished.size() == 1);
        CHECK(unfinished[0].id == other);

        auto for_node = value_of(store.journal_for("node-01", 10, "Node"));
        REQUIRE(for_node.size() == 2);
        CHECK(for_node[0].id == second);  // newest first
        CHECK(value_of(store.journal_for("node-01", 10)).size() == 3);
        CHECK(value_of(store.journal_for("node-01", 1)).size() == 1);

        CHECK(value_of(store.prune_journal(14)) == 1);  // only `first` finished before 14
        CHECK_FALSE(value_of(store.journal_get(first)).has_value());
        CHECK(value_of(store.journal_get(other)).has_value());
    }

    TEST_CASE("store: events filter by object and time, newest first")
    {
        TempDir dir("store");
        auto store = value_of(Store::open(dir / "state.db"));
        auto add = [&](double time, const char* kind, const char* object, const char* name) {
            Event event;
            event.time = time;
            event.object_kind = kind;
            event.object_name = object;
            event.name = name;
            event.message = std::string(name) + " message";
            event.revision = "r1";
            event.author = "alice";
            return value_of(store.add_event(event));
        };
        add(100, "Node", "node-01", "node.enroll.requested");
        add(200, "Node", "node-02", "node.enroll.requested");
        add(300, "Node", "node-01", "node.deploy.requested");
        add(400, "Revision", "r2", "revision.rejected");
        add(500, "KubeObject", "node-01", "kube.apply.done");

        auto all = value_of(store.list_events());
        REQUIRE(all.size() == 5);
        CHECK(all[0].time == 500);
        CHECK(all[4].time == 100);

        auto node01 = value_of(store.list_events(filter("Node", "node-01")));
        REQUIRE(node01.size() == 2);
        CHECK(node01[0].name == "node.deploy.requested");
        CHECK(node01[0].message == "node.deploy.requested message");
        CHECK(node01[0].revision == "r1");
        CHECK(node01[0].author == "alice");
        CHECK(node01[1].name == "node.enroll.requested");

        CHECK(value_of(store.list_events(filter({}, "node-01"))).size() == 3);
        auto recent = value_of(store.list_events(filter("Node", {}, {}, 200.0)));
        REQUIRE(recent.size() == 2);
        CHECK(recent[0].object_name == "node-01");
        CHECK(recent[1].object_name == "node-02");
        CHECK(value_of(store.list_events(filter({}, {}, "revision.rejected"))).size() == 1);
        CHECK(value_of(store.list_events(filter({}, {}, {}, {}, 2))).size() == 2);

        CHECK(value_of(store.prune_events(250)) == 2);
        CHECK(value_of(store.list_events()).size() == 3);
    }

    TEST_CASE("store: inspection, node status, inventory and meta")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        auto store = value_of(Store::open(path));

        SUBCASE("inspection")
        {
            CHECK_FALSE(value_of(store.load_inspection("node-01")).has_value());
            InspectionRecord record{"node-01", "uuid-1", {{"cpu", {{"count", 8}}}, {"disks", {{{"size", 1e12}}}}},
                                    42.25};
            require_ok(store.save_inspection(record));
            record.collected_at = 43;
            require_ok(store.save_inspection(record));
            auto loaded = value_of(store.load_inspection("node-01"));
            REQUIRE(loaded.has_value());
            CHECK(loaded->uuid == "uuid-1");
            CHECK(loaded->inventory == record.inventory);
            CHECK(loaded->collected_at == 43);

            require_ok(store.save_inspection(InspectionRecord{"node-00", "uuid-0", {{"source", "properties"}}, 44}));
            auto all = value_of(store.list_inspections());
            REQUIRE(all.size() == 2);
            CHECK(all[0].name == "node-00");
            CHECK(all[1].inventory == record.inventory);
            require_ok(store.delete_inspection("node-01"));
            CHECK_FALSE(value_of(store.load_inspection("node-01")).has_value());
            CHECK(value_of(store.list_inspections()).size() == 1);
        }
        SUBCASE("node status")
        {
            NodeStatus status;
            status.name = "node-01";
            status.attempts = 3;
            status.spec_hash = "h1";
            status.failed = true;
            status.last_error_type = "deploy failed";
            status.last_error = "Timeout";
            status.next_attempt_at = 99.5;
            status.applied_secret_hash = "hmac-sha256:abcd";
            status.since = 12.0;
            status.clean_steps_hash = "c1";
            status.config_drive_hash = "d1";
            status.inspected = true;
            status.was_active = true;
            status.uuid = "uuid-01";
            require_ok(store.put_node_status(status));
            auto loaded = value_of(store.get_node_status("node-01"));
            REQUIRE(loaded.has_value());
            CHECK(loaded->attempts == 3);
            CHECK(loaded->spec_hash == "h1");
            CHECK(loaded->failed);
            CHECK(loaded->last_error_type == "deploy failed");
            CHECK(loaded->last_error == "Timeout");
            CHECK(loaded->next_attempt_at == std::optional<double>(99.5));
            CHECK(loaded->applied_secret_hash == "hmac-sha256:abcd");
            CHECK(loaded->since == std::optional<double>(12.0));
            CHECK(loaded->clean_steps_hash == "c1");
            CHECK(loaded->config_drive_hash == "d1");
            CHECK(loaded->inspected);
            CHECK(loaded->was_active);
            CHECK(loaded->uuid == "uuid-01");

            status.attempts = 0;
            status.failed = false;
            status.next_attempt_at.reset();
            require_ok(store.put_node_status(status));
            NodeStatus second;
            second.name = "node-02";
            require_ok(store.put_node_status(second));
            auto all = value_of(store.list_node_statuses());
            REQUIRE(all.size() == 2);
            CHECK(all[0].attempts == 0);
            CHECK_FALSE(all[0].next_attempt_at.has_value());
            CHECK_FALSE(all[1].since.has_value());
            CHECK_FALSE(all[1].was_active);
            CHECK_FALSE(all[1].inspected);
            CHECK(all[1].uuid.empty());
            CHECK(all[0].config_drive_hash == "d1");
            require_ok(store.delete_node_status("node-02"));
            CHECK_FALSE(value_of(store.get_node_status("node-02")).has_value());
        }
        SUBCASE("kubernetes inventory")
        {
            CHECK_FALSE(value_of(store.last_inventory()).has_value());
            require_ok(store.record_revision(accepted("r1", 1)));
            require_ok(store.record_revision(accepted("r2", 2)));
            const std::vector<KubeInventoryRow> rows = {
                {"cluster.x-k8s.io/v1beta1", "Cluster", "capi", "a"},
                {"v1", "Namespace", "", "capi"},
            };
            require_ok(store.save_inventory("r1", rows));
            require_ok(store.save_inventory("r2", {rows[1]}));
            CHECK(value_of(store.load_inventory("r1")) == rows);
            auto last = value_of(store.last_inventory());
            REQUIRE(last.has_value());
            CHECK(last->revision == "r2");
            CHECK(last->rows == std::vector<KubeInventoryRow>{rows[1]});
        }
        SUBCASE("meta")
        {
            CHECK_FALSE(value_of(store.get_meta("git.last_fetched")).has_value());
            require_ok(store.set_meta("git.last_fetched", "abc"));
            require_ok(store.set_meta("git.last_fetched", "def"));
            CHECK(value_of(store.get_meta("git.last_fetched")) == std::optional<std::string>("def"));
            require_ok(store.delete_meta("git.last_fetched"));
            CHECK_FALSE(value_of(store.get_meta("git.last_fetched")).has_value());
        }
        SUBCASE("a transaction spans several calls")
        {
            {
                auto tx = value_of(store.transaction());
                require_ok(store.record_revision(accepted("t1", 1)));
                require_ok(store.save_desired("t1", {DesiredObjectRow{DesiredKind::node, "", "n", "h", {}}}));
                // A failing call inside rolls back only itself.
                CHECK_FALSE(store.save_desired("missing", {DesiredObjectRow{}}).has_value());
                require_ok(tx.commit());
            }
            CHECK(value_of(store.load_desired("t1")).size() == 1);
            {
                auto tx = value_of(store.transaction());
                require_ok(store.record_revision(accepted("t2", 2)));
            }
            CHECK_FALSE(value_of(store.revision("t2")).has_value());
        }
    }

    TEST_CASE("store: credentials never reach the database file")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        const std::string secret = "hunter2-Pa55w0rd-never-in-sqlite";
        // The credentials file the daemon reads; the store only ever sees its name.
        metalsync::test::write_file(dir / "rack1-bmc", "username: admin\npassword: " + secret + "\n");

        auto store = value_of(Store::open(path));
        require_ok(store.record_revision(accepted("c1", 1)));
        const nlohmann::json body = {{"name", "node-01"},
                                     {"bmc", {{"driver", "ipmi"}, {"address", "10.0.0.1"}, {"credentials", "rack1-bmc"}}}};
        require_ok(store.save_desired("c1", {DesiredObjectRow{DesiredKind::node, "", "node-01", "h", body}}));
        NodeStatus status;
        status.name = "node-01";
        status.applied_secret_hash = "hmac:0f1e2d";
        require_ok(store.put_node_status(status));

        // Even if Ironic ever returned a password in clear, the store masks it.
        ObservedState observed;
        auto node = full_node();
        node.driver_info["ipmi_password"] = secret;
        node.driver_info["redfish_password"] = "******";
        node.instance_info["configdrive"] = "user-data with " + secret;
        observed.nodes["node-01"] = node;
        require_ok(store.replace_observed(observed, 1));
        auto loaded = value_of(store.load_observed());
        CHECK(loaded.nodes.at("node-01").driver_info["ipmi_password"] == "******");
        CHECK(loaded.nodes.at("node-01").driver_info["ipmi_address"] == "192.168.1.100");

        auto desired = value_of(store.load_desired("c1"));
        REQUIRE(desired.size() == 1);
        CHECK(desired[0].body["bmc"]["credentials"] == "rack1-bmc");

        for (const auto* suffix : {"", "-wal", "-shm"}) {
            const std::filesystem::path file = path.string() + suffix;
            if (std::filesystem::exists(file)) {
                const auto bytes = metalsync::test::read_file(file);
                CHECK_MESSAGE(bytes.find(secret) == std::string::npos, file.string() << " holds the secret");
            }
        }
        CHECK(metalsync::test::read_file(path.string() + "-wal").find("rack1-bmc") != std::string::npos);
    }

    TEST_CASE("store: the provider's claims: one node per machine, one machine per node, kept across reopen")
    {
        TempDir dir("store");
        const auto path = dir / "state.db";
        {
            auto store = value_of(Store::open(path));
            require_ok(store.put_claim({"n1", "default", "w1", "uid-w1", "metal", "claimed", 10}));
            require_ok(store.put_claim({"n2", "default", "w2", "uid-w2", "metal", "claimed", 11}));
            // Another machine on n1: refused, naming the node and its holder; nothing changes.
            auto stolen = store.put_claim({"n1", "default", "w3", "uid-w3", "metal", "claimed", 12});
            REQUIRE_FALSE(stolen.has_value());
            CHECK(stolen.error().message.find("n1") != std::string::npos);
            CHECK(stolen.error().message.find("default/w1") != std::string::npos);
            // w2 moving onto n1: refused as well.
            CHECK_FALSE(store.put_claim({"n1", "default", "w2", "uid-w2", "metal", "claimed", 13}).has_value());
            // w2's own record changes in place (phase), and moves to a free node.
            require_ok(store.put_claim({"n2", "default", "w2", "uid-w2", "metal", "releasing", 14}));
            require_ok(store.put_claim({"n3", "default", "w2", "uid-w2", "metal", "claimed", 15}));
            auto rows = value_of(store.list_claims());
            REQUIRE(rows.size() == 2);
            CHECK(rows[0] == ClaimRow{"n1", "default", "w1", "uid-w1", "metal", "claimed", 10});
            CHECK(rows[1] == ClaimRow{"n3", "default", "w2", "uid-w2", "metal", "claimed", 15});
        }
        {
            auto store = value_of(Store::open(path));
            REQUIRE(value_of(store.list_claims()).size() == 2);
            CHECK(value_of(store.delete_claim("uid-w1")));
            CHECK_FALSE(value_of(store.delete_claim("uid-w1")));
            auto rows = value_of(store.list_claims());
            REQUIRE(rows.size() == 1);
            CHECK(rows[0].node == "n3");
            // n1 is free again.
            require_ok(store.put_claim({"n1", "default", "w4", "uid-w4", "metal", "claimed", 16}));
        }
    }
}
