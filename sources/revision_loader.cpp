#include "sources/revision_loader.hpp"

#include "sources/claim_table.hpp"

#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>

namespace metalsync {

namespace {

std::string where(const std::string& file, Position at)
{
    return file + ":" + std::to_string(at.line);
}

template <class T>
std::optional<T> pick(const std::optional<T>& node, const std::optional<T>& cls)
{
    return node ? node : cls;
}


// Fills `spec` (default-constructed, already in the state's map: no NodeSpec
// is moved).
void resolve(NodeSpec& spec, const NodeDocument& doc, const NodeClass* cls)
{
    static const NodeFields k_empty;
    const NodeFields& c = cls != nullptr ? cls->fields : k_empty;
    const NodeFields& n = doc.fields;
    spec.name = doc.name;
    spec.labels = doc.labels;
    spec.class_name = doc.class_name;
    spec.bmc.driver = pick(n.driver, c.driver).value_or("");
    spec.bmc.address = doc.bmc_address;
    spec.bmc.port = pick(n.bmc_port, c.bmc_port);
    spec.bmc.credentials = pick(n.credentials, c.credentials).value_or("");
    spec.bmc.system_id = doc.bmc_system_id;
    spec.bmc.verify_ca = pick(n.verify_ca, c.verify_ca);
    spec.interfaces = c.interfaces;
    for (const auto& [k, v] : n.interfaces) {
        spec.interfaces[k] = v;
    }
    spec.automated_clean = pick(n.automated_clean, c.automated_clean).value_or(true);
    spec.ports = doc.ports;
    spec.properties = c.properties;
    if (!(n.properties.is_object() && n.properties.empty() && spec.properties.is_object())) {
        spec.properties.merge_patch(n.properties);  // (an empty object patch is a no-op on an object)
    }
    spec.resource_class = pick(n.resource_class, c.resource_class).value_or("");
    spec.inspect = pick(n.inspect, c.inspect).value_or(false);
    spec.expect.cpus = pick(n.expect.cpus, c.expect.cpus);
    spec.expect.memory_mib = pick(n.expect.memory_mib, c.expect.memory_mib);
    spec.expect.disks = pick(n.expect.disks, c.expect.disks);
    spec.expect.cpu_arch = pick(n.expect.cpu_arch, c.expect.cpu_arch);
    spec.provision_state = pick(n.provision_state, c.provision_state).value_or(ProvisionGoal::available);
    spec.image = pick(n.image, c.image);
    spec.config_drive = pick(n.config_drive, c.config_drive);
    spec.clean_steps = pick(n.clean_steps, c.clean_steps).value_or(std::vector<CleanStep>{});
    spec.maintenance = pick(n.maintenance, c.maintenance).value_or(false);
    spec.maintenance_reason = pick(n.maintenance_reason, c.maintenance_reason).value_or("");
    spec.power = pick(n.power, c.power);
    spec.source = doc.source;
}

// A BMC as the duplicate check sees it: address:port[/system]. An address
// holds no '/' and a system id starts with one, so two endpoints are equal
// exactly when their "address:port/system" texts are.
struct BmcEndpoint {
    std::string_view address;
    int port = 0;
    std::string_view system_id;

    bool operator==(const BmcEndpoint&) const = default;
    [[nodiscard]] std::string to_string() const
    {
        return std::string(address) + ":" + std::to_string(port) + std::string(system_id);
    }
};

struct BmcEndpointHash {
    std::size_t operator()(const BmcEndpoint& e) const
    {
        const std::hash<std::string_view> h;
        std::size_t seed = h(e.address);
        seed ^= static_cast<std::size_t>(e.port) + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2);
        seed ^= h(e.system_id) + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2);
        return seed;
    }
};

std::string api_group(const std::string& api_version)
{
    auto slash = api_version.find('/');
    return slash == std::string::npos ? "" : api_version.substr(0, slash);
}

} // namespace

std::expected<DesiredState, Diagnostics> assemble_revision(const std::vector<std::shared_ptr<const ParsedFile>>& files)
{
    Diagnostics errors;
    DesiredState state;
    for (const auto& f : files) {
        errors.insert(errors.end(), f->diagnostics.begin(), f->diagnostics.end());
    }

    auto report = [&errors](const std::string& file, Position at, std::string field, std::string reason) {
        errors.push_back({file, at.line, at.column, std::move(field), std::move(reason)});
    };

    // Classes first: nodes refer to them.
    std::map<std::string, Position> class_at;
    for (const auto& f : files) {
        for (const auto& c : f->classes) {
            const auto& name = c.node_class.name;
            if (auto it = state.classes.find(name); it != state.classes.end()) {
                report(c.node_class.source.file, c.name_at, "metadata.name",
                       "NodeClass '" + name + "' is already declared at " +
                           where(it->second.source.file, class_at[name]));
                continue;
            }
            class_at[name] = c.name_at;
            state.classes.emplace(name, c.node_class);
        }
    }

    const PolicyDocument* policy = nullptr;
    for (const auto& f : files) {
        for (const auto& p : f->policies) {
            if (policy != nullptr) {
                report(p.policy.source.file, p.name_at, "metadata.name",
                       "a repository holds one Policy; '" + policy->policy.name + "' is already declared at " +
                           where(policy->policy.source.file, policy->name_at));
                continue;
            }
            policy = &p;
        }
    }
    if (policy != nullptr) {
        state.policy = policy->policy;
        state.has_policy = true;
    }

    // Node names are claimed in state.nodes itself; MACs and BMCs in claim
    // tables sized up front, keyed by views into the parsed files (alive
    // until this function returns). The "file:line" of the first claimant is
    // only looked up and formatted for a conflict.
    std::size_t node_count = 0;
    std::size_t port_count = 0;
    for (const auto& f : files) {
        node_count += f->nodes.size();
        for (const auto& doc : f->nodes) {
            port_count += doc.ports.size();
        }
    }
    struct PortClaim {
        const NodeDocument* doc = nullptr;
        std::size_t index = 0;
    };
    ClaimTable<std::string_view, PortClaim> mac_owner(port_count);
    ClaimTable<BmcEndpoint, const NodeDocument*, BmcEndpointHash> bmc_owner(node_count);
    std::unordered_map<std::string_view, const NodeDocument*> first_declared;  // built at the first duplicate name
    for (const auto& f : files) {
        for (const auto& doc : f->nodes) {
            const auto& file = doc.source.file;
            // Files come in path order and generated repositories name their
            // nodes along their paths: with the end() hint such a node is
            // appended in constant time (the hint never changes the result).
            const std::size_t before = state.nodes.size();
            auto slot = state.nodes.try_emplace(state.nodes.end(), doc.name);
            if (state.nodes.size() == before) {
                if (first_declared.empty()) {
                    for (const auto& g : files) {
                        for (const auto& d : g->nodes) {
                            first_declared.emplace(d.name, &d);
                        }
                    }
                }
                const NodeDocument& first = *first_declared.at(doc.name);
                report(file, doc.name_at, "metadata.name",
                       "node '" + doc.name + "' is already declared at " + where(first.source.file, first.name_at));
                continue;
            }
            // From here on an error leaves the node's entry as it is: a
            // revision with an error is rejected whole, its state never used.
            const NodeClass* cls = nullptr;
            if (!doc.class_name.empty()) {
                auto it = state.classes.find(doc.class_name);
                if (it == state.classes.end()) {
                    if (!doc.incomplete) {
                        report(file, doc.class_at, "spec.class", "NodeClass '" + doc.class_name + "' does not exist");
                        continue;
                    }
                } else {
                    cls = &it->second;
                }
            }
            NodeSpec& spec = slot->second;
            resolve(spec, doc, cls);
            auto via = [cls] { return cls != nullptr ? " (here or in NodeClass '" + cls->name + "')" : std::string(); };
            // A document with errors of its own is checked against the others
            // only (MACs, BMC): what it lacks may be what its errors are about.
            if (!doc.incomplete && spec.bmc.driver.empty()) {
                report(file, doc.bmc_at, "spec.bmc.driver", "no driver: set spec.bmc.driver" + via());
            }
            if (!doc.incomplete && spec.bmc.credentials.empty() && !spec.bmc.driver.empty() &&
                spec.bmc.driver != "fake-hardware") {
                report(file, doc.bmc_at, "spec.bmc.credentials",
                       "driver '" + spec.bmc.driver + "' needs credentials: set spec.bmc.credentials" + via());
            }
            if (!doc.incomplete && spec.provision_state == ProvisionGoal::active && !spec.image) {
                report(file, Position{doc.source.line, 1}, "spec.image",
                       "provisionState active needs an image: set spec.image" + via());
            }
            for (std::size_t i = 0; i < doc.ports.size(); ++i) {
                const auto& mac = doc.ports[i].mac;
                if (const auto* first = mac_owner.claim(mac, PortClaim{&doc, i})) {
                    const auto& owner = *first->doc;
                    report(file, doc.mac_at[i], "spec.ports[" + std::to_string(i) + "].mac",
                           "MAC " + mac + " is already claimed by node '" + owner.name + "' at " +
                               where(owner.source.file, owner.mac_at[first->index]));
                }
            }
            if (!doc.bmc_address.empty() && !spec.bmc.driver.empty()) {
                const BmcEndpoint key{doc.bmc_address, spec.bmc.port.value_or(default_bmc_port(spec.bmc.driver)),
                                      doc.bmc_system_id};
                if (const auto* first = bmc_owner.claim(key, &doc)) {
                    const auto& owner = **first;
                    report(file, doc.address_at, "spec.bmc.address",
                           "BMC " + key.to_string() + " is already claimed by node '" + owner.name + "' at " +
                               where(owner.source.file, owner.address_at));
                }
            }
        }
    }

    std::map<std::tuple<std::string, std::string, std::string, std::string>, std::string> kube_at;
    for (const auto& f : files) {
        for (const auto& k : f->kube_objects) {
            const auto& o = k.object;
            auto key = std::make_tuple(api_group(o.api_version), o.kind, o.namespace_, o.name);
            auto here = where(o.source.file, k.name_at);
            auto [it, inserted] = kube_at.emplace(key, here);
            if (!inserted) {
                report(o.source.file, k.name_at, "metadata.name",
                       o.kind + " '" + (o.namespace_.empty() ? "" : o.namespace_ + "/") + o.name +
                           "' is already declared at " + it->second);
                continue;
            }
            state.kube_objects.push_back(o);
        }
    }

    if (!errors.empty()) {
        sort_diagnostics(errors);
        return std::unexpected(std::move(errors));
    }
    return state;
}

std::expected<DesiredState, Diagnostics> RevisionLoader::load(const std::vector<RepoFile>& files, const ReadFile& read)
{
    m_stats = {};
    m_stats.files = files.size();
    std::unordered_map<std::string, std::shared_ptr<const ParsedFile>> next_cache;
    std::vector<std::shared_ptr<const ParsedFile>> parsed;
    parsed.reserve(files.size());
    for (const auto& file : files) {
        std::string key = file.path + '\0' + file.id;
        std::shared_ptr<const ParsedFile> entry;
        if (auto it = m_cache.find(key); it != m_cache.end()) {
            entry = it->second;
        } else {
            auto pf = std::make_shared<ParsedFile>();
            if (file.symlink) {
                pf->diagnostics.push_back({file.path, 1, 1, "",
                                           "symbolic links are not followed; commit the file itself"});
            } else if (auto content = read(file)) {
                *pf = parse_file(file.path, *content, m_limits);
            } else {
                pf->diagnostics.push_back({file.path, 1, 1, "", "cannot read: " + content.error()});
            }
            ++m_stats.parsed;
            entry = std::move(pf);
        }
        next_cache.emplace(key, entry);
        parsed.push_back(std::move(entry));
    }
    m_cache = std::move(next_cache);
    return assemble_revision(parsed);
}

} // namespace metalsync
