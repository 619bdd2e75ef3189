// Inspection results against the spec's `expect`: Ironic's inventory (as
// ironic-python-agent shapes it) and the properties fallback read into the
// same facts; floors for counts, equality for the architecture, "not
// checkable" for what a source cannot tell. Pure: no server, no store.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "reconcilers/inspection.hpp"
#include "reconcilers/node_memory_conversion.hpp"

using namespace metalsync;
using nlohmann::json;

namespace {

// GET /v1/nodes/{id}/inventory as Ironic 2023.1 returns what IPA sent.
json agent_inventory()
{
    return json::parse(R"({
      "inventory": {
        "interfaces": [{"name": "eth0", "mac_address": "52:54:00:12:34:56", "ipv4_address": "192.0.2.10"}],
        "cpu": {"model_name": "Intel(R) Xeon(R) Gold 6130", "frequency": "2100", "count": 32,
                "architecture": "x86_64", "flags": ["fpu", "vme"]},
        "memory": {"total": 134850297856, "physical_mb": 131072},
        "disks": [
          {"name": "/dev/sda", "model": "PERC H740P", "size": 479559942144, "rotational": false},
          {"name": "/dev/sdb", "model": "PERC H740P", "size": 3999688294400, "rotational": true}
        ],
        "bmc_address": "192.0.2.200",
        "system_vendor": {"product_name": "PowerEdge R640", "serial_number": "ABC1234", "manufacturer": "Dell Inc."},
        "boot": {"current_boot_mode": "uefi", "pxe_interface": "52:54:00:12:34:56"},
        "hostname": "localhost"
      },
      "plugin_data": {"root_disk": {"name": "/dev/sda"}, "all_interfaces": {}}
    })");
}

HardwareExpectation expect(std::optional<int> cpus, std::optional<std::int64_t> memory, std::optional<int> disks,
                           std::optional<std::string> arch)
{
    HardwareExpectation e;
    e.cpus = cpus;
    e.memory_mib = memory;
    e.disks = disks;
    e.cpu_arch = std::move(arch);
    return e;
}

} // namespace

TEST_SUITE("reconcilers")
{
    TEST_CASE("inspection: an agent's inventory gives CPUs, installed memory, disks and architecture")
    {
        auto hw = hardware_from_inventory(agent_inventory());
        CHECK(hw.source == "inventory");
        CHECK(hw.cpus == 32);
        CHECK(hw.memory_mib == 131072); // physical_mb, not the usable total
        CHECK(hw.disks == 2);
        CHECK(hw.cpu_arch == "x86_64");
        CHECK(hw.local_gib == 3725); // the largest disk
        CHECK(describe(hw) == "32 CPUs, 131072 MiB, 2 disks, x86_64 (from inventory)");

        SUBCASE("without physical_mb the usable total is used")
        {
            auto body = agent_inventory();
            body["inventory"]["memory"].erase("physical_mb");
            CHECK(hardware_from_inventory(body).memory_mib == 128603);
        }
        SUBCASE("a bare inventory object, and one with nothing in it")
        {
            CHECK(hardware_from_inventory(agent_inventory().at("inventory")).cpus == 32);
            auto empty = hardware_from_inventory(json::object());
            CHECK_FALSE(empty.cpus.has_value());
            CHECK_FALSE(empty.disks.has_value());
            CHECK(describe(empty) == "nothing reported (from inventory)");
        }
    }

    TEST_CASE("inspection: properties give what inspection wrote there, numbers or numeric strings, never a disk count")
    {
        json properties = {{"cpus", "8"},
                           {"memory_mb", 16384},
                           {"local_gb", "100"},
                           {"cpu_arch", "x86_64"},
                           {"capabilities", "boot_mode:uefi"}};
        CHECK(inspection_properties(properties) ==
              json({{"cpus", "8"}, {"memory_mb", 16384}, {"local_gb", "100"}, {"cpu_arch", "x86_64"}}));
        auto hw = hardware_from_properties(properties);
        CHECK(hw.source == "properties");
        CHECK(hw.cpus == 8);
        CHECK(hw.memory_mib == 16384);
        CHECK(hw.local_gib == 100);
        CHECK_FALSE(hw.disks.has_value());
        CHECK(hardware_from_properties({{"cpus", "eight"}}).cpus == std::nullopt);
    }

    TEST_CASE("inspection: expect is a floor for cpus, memoryMiB and disks, and equality for cpuArch")
    {
        auto hw = hardware_from_inventory(agent_inventory());
        SUBCASE("at or above every floor matches")
        {
            auto check = check_expectation(expect(32, 131072, 2, "x86_64"), hw);
            CHECK(check.ok());
            CHECK(check.unchecked.empty());
            CHECK(check.match_text() == "cpus 32 >= 32, memoryMiB 131072 >= 131072, disks 2 >= 2, cpuArch x86_64");
            CHECK(check_expectation(expect(8, 16000, 1, "AMD64"), hw).ok());
        }
        SUBCASE("below a floor, or another architecture, names each field")
        {
            auto check = check_expectation(expect(64, 262144, 3, "aarch64"), hw);
            CHECK_FALSE(check.ok());
            CHECK(check.mismatch_text() == "expect.cpus: 64, inspected 32; expect.memoryMiB: 262144, inspected 131072; "
                                           "expect.disks: 3, inspected 2; expect.cpuArch: aarch64, inspected x86_64");
        }
        SUBCASE("from properties, disks are not checkable rather than a mismatch")
        {
            auto props = hardware_from_properties({{"cpus", 4}, {"memory_mb", 8192}});
            auto check = check_expectation(expect(8, std::nullopt, 1, "x86_64"), props);
            CHECK(check.mismatches == std::vector<std::string>{"expect.cpus: 8, inspected 4"});
            REQUIRE(check.unchecked.size() == 2);
            CHECK(check.unchecked[0].starts_with("expect.disks: not checkable"));
            CHECK(check.unchecked[1].starts_with("expect.cpuArch: not checkable"));
        }
        SUBCASE("no expectation: nothing to compare")
        {
            CHECK_FALSE(has_expectation(HardwareExpectation{}));
            CHECK(check_expectation(HardwareExpectation{}, hw).ok());
            CHECK_FALSE(inspection_json(hw, HardwareExpectation{}).contains("matches"));
        }
    }

    TEST_CASE("inspection: collected, stored and read back; the expect it was collected under travels with it")
    {
        const auto key = expect_key(expect(8, std::nullopt, 1, std::nullopt));
        CHECK(key == R"({"cpus":8,"disks":1})");
        CHECK(expect_key(HardwareExpectation{}) == "{}");
        auto collected = collected_inspection("inventory", agent_inventory(), key);
        auto record = inspection_record("node-01", "uuid-1", collected, 1.7e9);
        CHECK(record.inventory.at("source") == "inventory");
        CHECK(record.inventory.at("data").at("plugin_data").at("root_disk").at("name") == "/dev/sda");
        auto memory = inspection_memory(record);
        CHECK(memory.expect_key == key);
        CHECK(memory.hardware.cpus == 32);
        CHECK(memory.hardware.disks == 2);

        auto from_properties = inspection_memory(
            inspection_record("node-01", "uuid-1", collected_inspection("properties", {{"cpus", 4}}, key), 1.7e9));
        CHECK(from_properties.hardware.source == "properties");
        CHECK(from_properties.hardware.cpus == 4);

        auto view = inspection_json(memory.hardware, expect(64, std::nullopt, 1, std::nullopt));
        CHECK(view.at("matches") == false);
        CHECK(view.at("mismatches") == json::array({"expect.cpus: 64, inspected 32"}));
        CHECK(view.at("summary") == "32 CPUs, 131072 MiB, 2 disks, x86_64 (from inventory)");
    }

    TEST_CASE("node memory: an inspection request drops the collected result; a collection sets it")
    {
        NodeMemory memory;
        memory.inspected = true;
        memory.inspection = InspectionMemory{hardware_from_properties({{"cpus", 2}}), "{}"};
        ActionResult requested;
        requested.ok = true;
        requested.inspected = true;
        apply_result(memory, requested);
        CHECK(memory.inspected);
        CHECK_FALSE(memory.inspection.has_value());

        ActionResult failed_read;
        failed_read.inspection = collected_inspection("properties", {{"cpus", 4}}, "{}");
        apply_result(memory, failed_read); // not ok: nothing learnt
        CHECK_FALSE(memory.inspection.has_value());

        ActionResult read;
        read.ok = true;
        read.inspection = collected_inspection("properties", {{"cpus", 4}}, R"({"cpus":4})");
        apply_result(memory, read);
        REQUIRE(memory.inspection.has_value());
        CHECK(memory.inspection->hardware.cpus == 4);
        CHECK(memory.inspection->expect_key == R"({"cpus":4})");
    }
}
