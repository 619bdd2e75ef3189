#include "reconcilers/inspection.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace metalsync {

namespace {

using nlohmann::json;

// A whole number from a JSON number or a numeric string ("8", "16384");
// Ironic stores properties as the client sent them.
std::optional<std::int64_t> whole_number(const json& object, const char* key)
{
    if (!object.is_object() || !object.contains(key)) {
        return std::nullopt;
    }
    const json& v = object.at(key);
    if (v.is_number_integer()) {
        return v.get<std::int64_t>();
    }
    if (v.is_number_float()) {
        return static_cast<std::int64_t>(v.get<double>());
    }
    if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        std::int64_t n = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
        if (ec == std::errc() && end == s.data() + s.size()) {
            return n;
        }
    }
    return std::nullopt;
}

std::optional<std::string> text(const json& object, const char* key)
{
    if (object.is_object() && object.contains(key) && object.at(key).is_string() &&
        !object.at(key).get_ref<const std::string&>().empty()) {
        return object.at(key).get<std::string>();
    }
    return std::nullopt;
}

std::optional<int> small(std::optional<std::int64_t> n)
{
    if (!n || *n < 0 || *n > 1'000'000) {
        return std::nullopt;
    }
    return static_cast<int>(*n);
}

std::string canonical_arch(std::string arch)
{
    std::transform(arch.begin(), arch.end(), arch.begin(), [](unsigned char c) { return std::tolower(c); });
    if (arch == "amd64") return "x86_64";
    if (arch == "arm64") return "aarch64";
    return arch;
}

std::string plural(std::int64_t n, const char* one, const char* many)
{
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string not_reported(const InspectedHardware& hw, const char* what)
{
    if (hw.source == k_inspection_source_properties && std::string(what) == "disks") {
        return "not checkable (no inspection inventory in Ironic; its properties carry no disk count)";
    }
    return std::string("not checkable (the inspection's ") + hw.source + " report no " + what + ")";
}

std::string join(const std::vector<std::string>& parts, const char* separator)
{
    std::string out;
    for (const auto& p : parts) {
        out += (out.empty() ? "" : separator) + p;
    }
    return out;
}

} // namespace

InspectedHardware hardware_from_inventory(const json& body)
{
    const json& inventory = body.is_object() && body.contains("inventory") ? body.at("inventory") : body;
    InspectedHardware hw;
    hw.source = k_inspection_source_inventory;
    if (!inventory.is_object()) {
        return hw;
    }
    if (inventory.contains("cpu")) {
        const json& cpu = inventory.at("cpu");
        hw.cpus = small(whole_number(cpu, "count"));
        hw.cpu_arch = text(cpu, "architecture");
    }
    if (inventory.contains("memory")) {
        const json& memory = inventory.at("memory");
        // physical_mb: installed (DMI); total: bytes the kernel can use.
        if (auto mb = whole_number(memory, "physical_mb"); mb && *mb > 0) {
            hw.memory_mib = *mb;
        } else if (auto total = whole_number(memory, "total"); total && *total > 0) {
            hw.memory_mib = *total / (1024 * 1024);
        }
    }
    if (inventory.contains("disks") && inventory.at("disks").is_array()) {
        hw.disks = static_cast<int>(inventory.at("disks").size());
        std::int64_t largest = 0;
        for (const auto& disk : inventory.at("disks")) {
            largest = std::max(largest, whole_number(disk, "size").value_or(0));
        }
        if (largest > 0) {
            hw.local_gib = largest / (std::int64_t{1} << 30);
        }
    }
    return hw;
}

InspectedHardware hardware_from_properties(const json& properties)
{
    InspectedHardware hw;
    hw.source = k_inspection_source_properties;
    hw.cpus = small(whole_number(properties, "cpus"));
    hw.memory_mib = whole_number(properties, "memory_mb");
    hw.cpu_arch = text(properties, "cpu_arch");
    hw.local_gib = whole_number(properties, "local_gb");
    return hw;
}

json inspection_properties(const json& properties)
{
    json subset = json::object();
    for (const char* key : {"cpus", "memory_mb", "local_gb", "cpu_arch"}) {
        if (properties.is_object() && properties.contains(key)) {
            subset[key] = properties.at(key);
        }
    }
    return subset;
}

json collected_inspection(const std::string& source, json data, const std::string& expect_key)
{
    json j = json::object();
    j["source"] = source;
    j["data"] = std::move(data);
    j["expect"] = expect_key;
    return j;
}

InspectedHardware hardware_from_collected(const json& collected)
{
    static const json k_empty = json::object();
    const json& data = collected.is_object() && collected.contains("data") ? collected.at("data") : k_empty;
    if (text(collected, "source") == std::optional<std::string>(k_inspection_source_inventory)) {
        return hardware_from_inventory(data);
    }
    return hardware_from_properties(data);
}

std::string expect_key_of(const json& collected)
{
    return text(collected, "expect").value_or("");
}

std::string expect_key(const HardwareExpectation& e)
{
    // Keys in a fixed order: nlohmann::json objects are sorted, so dump() is canonical.
    json j = json::object();
    if (e.cpus) j["cpus"] = *e.cpus;
    if (e.memory_mib) j["memoryMiB"] = *e.memory_mib;
    if (e.disks) j["disks"] = *e.disks;
    if (e.cpu_arch) j["cpuArch"] = *e.cpu_arch;
    return j.dump();
}

bool has_expectation(const HardwareExpectation& e)
{
    return e.cpus || e.memory_mib || e.disks || e.cpu_arch;
}

std::string ExpectationCheck::mismatch_text() const
{
    return join(mismatches, "; ");
}

std::string ExpectationCheck::match_text() const
{
    std::string out = join(matched, ", ");
    if (!unchecked.empty()) {
        out += (out.empty() ? "" : "; ") + join(unchecked, "; ");
    }
    return out;
}

ExpectationCheck check_expectation(const HardwareExpectation& expect, const InspectedHardware& hw)
{
    ExpectationCheck check;
    auto floor = [&](const char* field, std::optional<std::int64_t> want, std::optional<std::int64_t> have,
                     const char* what) {
        if (!want) {
            return;
        }
        const std::string name = std::string("expect.") + field;
        if (!have) {
            check.unchecked.push_back(name + ": " + not_reported(hw, what));
        } else if (*have < *want) {
            check.mismatches.push_back(name + ": " + std::to_string(*want) + ", inspected " + std::to_string(*have));
        } else {
            check.matched.push_back(std::string(field) + " " + std::to_string(*have) + " >= " + std::to_string(*want));
        }
    };
    auto as64 = [](std::optional<int> v) { return v ? std::optional<std::int64_t>(*v) : std::nullopt; };
    floor("cpus", as64(expect.cpus), as64(hw.cpus), "CPU count");
    floor("memoryMiB", expect.memory_mib, hw.memory_mib, "memory size");
    floor("disks", as64(expect.disks), as64(hw.disks), "disks");
    if (expect.cpu_arch) {
        if (!hw.cpu_arch) {
            check.unchecked.push_back("expect.cpuArch: " + not_reported(hw, "CPU architecture"));
        } else if (canonical_arch(*hw.cpu_arch) != canonical_arch(*expect.cpu_arch)) {
            check.mismatches.push_back("expect.cpuArch: " + *expect.cpu_arch + ", inspected " + *hw.cpu_arch);
        } else {
            check.matched.push_back("cpuArch " + *hw.cpu_arch);
        }
    }
    return check;
}

std::string describe(const InspectedHardware& hw)
{
    std::vector<std::string> parts;
    if (hw.cpus) parts.push_back(plural(*hw.cpus, "CPU", "CPUs"));
    if (hw.memory_mib) parts.push_back(std::to_string(*hw.memory_mib) + " MiB");
    if (hw.disks) parts.push_back(plural(*hw.disks, "disk", "disks"));
    if (hw.cpu_arch) parts.push_back(*hw.cpu_arch);
    if (hw.local_gib && !hw.disks) parts.push_back(std::to_string(*hw.local_gib) + " GiB local disk");
    std::string out = parts.empty() ? "nothing reported" : join(parts, ", ");
    return out + " (from " + (hw.source.empty() ? std::string("unknown") : hw.source) + ")";
}

json inspection_json(const InspectedHardware& hw, const HardwareExpectation& expect)
{
    json j = json::object();
    j["source"] = hw.source;
    j["summary"] = describe(hw);
    if (hw.cpus) j["cpus"] = *hw.cpus;
    if (hw.memory_mib) j["memoryMiB"] = *hw.memory_mib;
    if (hw.disks) j["disks"] = *hw.disks;
    if (hw.cpu_arch) j["cpuArch"] = *hw.cpu_arch;
    if (hw.local_gib) j["localGiB"] = *hw.local_gib;
    if (has_expectation(expect)) {
        auto check = check_expectation(expect, hw);
        j["expect"] = json::parse(expect_key(expect));
        j["matches"] = check.ok();
        j["mismatches"] = check.mismatches;
        j["unchecked"] = check.unchecked;
    }
    return j;
}

} // namespace metalsync
