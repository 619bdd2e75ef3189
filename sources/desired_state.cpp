#include "sources/desired_state.hpp"

#include <iomanip>
#include <sstream>

namespace metalsync {

const char* to_string(ProvisionGoal goal)
{
    switch (goal) {
    case ProvisionGoal::manageable: return "manageable";
    case ProvisionGoal::available: return "available";
    case ProvisionGoal::active: return "active";
    }
    return "unknown";
}

const char* to_string(PowerGoal goal) { return goal == PowerGoal::on ? "on" : "off"; }

int default_bmc_port(std::string_view driver) { return driver == "ipmi" || driver == "fake-hardware" ? 623 : 443; }

static nlohmann::json to_json(const HardwareExpectation& e)
{
    nlohmann::json j = nlohmann::json::object();
    if (e.cpus) j["cpus"] = *e.cpus;
    if (e.memory_mib) j["memoryMiB"] = *e.memory_mib;
    if (e.disks) j["disks"] = *e.disks;
    if (e.cpu_arch) j["cpuArch"] = *e.cpu_arch;
    return j;
}

nlohmann::json to_json(const NodeSpec& n)
{
    nlohmann::json j;
    j["name"] = n.name;
    j["labels"] = n.labels;
    if (!n.class_name.empty()) j["class"] = n.class_name;
    nlohmann::json bmc = {{"driver", n.bmc.driver}, {"address", n.bmc.address}, {"credentials", n.bmc.credentials}};
    if (n.bmc.port) bmc["port"] = *n.bmc.port;
    if (!n.bmc.system_id.empty()) bmc["systemId"] = n.bmc.system_id;
    if (n.bmc.verify_ca) bmc["verifyCA"] = *n.bmc.verify_ca;
    j["bmc"] = bmc;
    j["interfaces"] = n.interfaces;
    j["automatedClean"] = n.automated_clean;
    j["ports"] = nlohmann::json::array();
    for (const auto& p : n.ports) {
        nlohmann::json pj = {{"mac", p.mac}, {"pxe", p.pxe}};
        if (!p.physical_network.empty()) pj["physicalNetwork"] = p.physical_network;
        j["ports"].push_back(pj);
    }
    j["properties"] = n.properties;
    j["resourceClass"] = n.resource_class;
    j["inspect"] = n.inspect;
    j["expect"] = to_json(n.expect);
    j["provisionState"] = to_string(n.provision_state);
    if (n.image) {
        nlohmann::json ij = {{"source", n.image->source}};
        if (!n.image->checksum.empty()) ij["checksum"] = n.image->checksum;
        if (!n.image->kernel.empty()) ij["kernel"] = n.image->kernel;
        if (!n.image->ramdisk.empty()) ij["ramdisk"] = n.image->ramdisk;
        if (n.image->root_gib) ij["rootGiB"] = *n.image->root_gib;
        j["image"] = ij;
    }
    if (n.config_drive) {
        nlohmann::json cj = {{"metaData", n.config_drive->meta_data}};
        if (n.config_drive->user_data) cj["userData"] = *n.config_drive->user_data;
        if (!n.config_drive->network_data.is_null()) cj["networkData"] = n.config_drive->network_data;
        j["configDrive"] = cj;
    }
    j["cleanSteps"] = nlohmann::json::array();
    for (const auto& s : n.clean_steps) {
        j["cleanSteps"].push_back({{"interface", s.interface}, {"step", s.step}, {"args", s.args}});
    }
    j["maintenance"] = n.maintenance;
    if (!n.maintenance_reason.empty()) j["maintenanceReason"] = n.maintenance_reason;
    if (n.power) j["power"] = to_string(*n.power);
    j["source"] = {{"file", n.source.file}, {"line", n.source.line}};
    return j;
}

nlohmann::json to_json(const Policy& p)
{
    nlohmann::json limits = nlohmann::json::object();
    if (p.limits.max_provisioning) limits["maxProvisioning"] = *p.limits.max_provisioning;
    if (p.limits.ironic_qps) limits["ironicQPS"] = *p.limits.ironic_qps;
    if (p.limits.kubernetes_qps) limits["kubernetesQPS"] = *p.limits.kubernetes_qps;
    if (p.limits.per_bmc) limits["perBMC"] = *p.limits.per_bmc;
    return {{"name", p.name},
            {"prune", p.prune},
            {"massDeletion", {{"maxPercent", p.mass_deletion_max_percent}, {"allow", p.mass_deletion_allowed}}},
            {"maxRetries", p.max_retries},
            {"limits", limits}};
}

// FNV-1a 64 over the canonical JSON (keys sorted by nlohmann's std::map).
// Not cryptographic: it only has to notice that a spec changed.
static std::string fnv1a_hex(const std::string& data)
{
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : data) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    std::ostringstream os;
    os << std::hex << std::setw(16) << std::setfill('0') << h;
    return os.str();
}

std::string spec_hash(const NodeSpec& node)
{
    auto j = to_json(node);
    j.erase("source");
    j.erase("labels");
    return fnv1a_hex(j.dump());
}

} // namespace metalsync
