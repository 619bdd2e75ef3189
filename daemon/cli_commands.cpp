#include "daemon/cli_commands.hpp"

#include <ctime>
#include <iomanip>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "daemon/daemon_config.hpp"
#include "daemon/desired_loading.hpp"
#include "reconcilers/ironic/ironic_client.hpp"
#include "reconcilers/node_memory_conversion.hpp"
#include "reconcilers/node_planner.hpp"
#include "reconcilers/openstack/clouds_config.hpp"
#include "reconcilers/provider/controller.hpp"
#include "reconcilers/provider/objects.hpp"
#include "store/store.hpp"

namespace metalsync {

namespace {

nlohmann::json diagnostics_json(const Diagnostics& diagnostics)
{
    auto out = nlohmann::json::array();
    for (const auto& d : diagnostics) {
        out.push_back({{"file", d.file}, {"line", d.line}, {"column", d.column}, {"field", d.field}, {"reason", d.reason}});
    }
    return out;
}

std::string summary(const DesiredState& state)
{
    return std::to_string(state.nodes.size()) + " nodes, " + std::to_string(state.classes.size()) + " node classes, " +
           (state.has_policy ? "1 policy, " : "no policy, ") + std::to_string(state.kube_objects.size()) +
           " Kubernetes objects";
}

void print_table(const std::vector<std::vector<std::string>>& rows)
{
    std::vector<std::size_t> width;
    for (const auto& row : rows) {
        width.resize(std::max(width.size(), row.size()));
        for (std::size_t i = 0; i < row.size(); ++i) {
            width[i] = std::max(width[i], row[i].size());
        }
    }
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) {
                line += std::string(width[i] - row[i].size() + 2, ' ');
            }
        }
        std::cout << line << "\n";
    }
}

} // namespace

int run_validate(const ValidateOptions& options)
{
    RevisionLoader loader;
    auto loaded = load_work_tree(options.path, loader);
    if (!loaded) {
        std::cerr << "metalsync validate: " << loaded.error() << "\n";
        return k_exit_error;
    }
    if (options.output == "json") {
        nlohmann::json out = {{"path", options.path}, {"valid", loaded->state.has_value()}};
        out["errors"] = loaded->state ? nlohmann::json::array() : diagnostics_json(loaded->state.error());
        std::cout << out.dump(2) << "\n";
        return loaded->state ? k_exit_ok : k_exit_findings;
    }
    if (!loaded->state) {
        for (const auto& d : loaded->state.error()) {
            std::cout << d.to_string() << "\n";
        }
        std::cerr << options.path << ": " << loaded->state.error().size() << " error"
                  << (loaded->state.error().size() == 1 ? "" : "s") << "; the revision would be rejected whole\n";
        return k_exit_findings;
    }
    std::cerr << options.path << ": valid (" << summary(*loaded->state) << ")\n";
    return k_exit_ok;
}

int run_plan(const PlanOptions& options)
{
    RevisionLoader loader;
    std::optional<LoadedRevision> loaded;
    std::optional<DaemonConfig> config;
    if (options.repo.empty() || !options.state_dir.empty()) {
        auto cfg = load_daemon_config(options.config);
        if (!cfg) {
            if (options.repo.empty()) {
                for (const auto& d : cfg.error()) {
                    std::cerr << d.to_string() << "\n";
                }
                std::cerr << "metalsync plan: no usable configuration; give --repo PATH to plan from a directory\n";
                return k_exit_error;
            }
        } else {
            config = *cfg;
        }
    }
    if (!options.repo.empty()) {
        auto r = load_work_tree(options.repo, loader);
        if (!r) {
            std::cerr << "metalsync plan: " << r.error() << "\n";
            return k_exit_error;
        }
        loaded = std::move(*r);
    } else {
        if (!config->has_git) {
            std::cerr << "metalsync plan: " << options.config << " configures no git remote; give --repo PATH\n";
            return k_exit_error;
        }
        GitSource source(config->git);
        auto polled = source.poll("");
        if (!polled) {
            std::cerr << "metalsync plan: " << polled.error().message << "\n";
            return k_exit_error;
        }
        auto r = load_commit(source, polled->commit, loader);
        if (!r) {
            std::cerr << "metalsync plan: " << r.error() << "\n";
            return k_exit_error;
        }
        loaded = std::move(*r);
    }
    if (!loaded->state) {
        for (const auto& d : loaded->state.error()) {
            std::cerr << d.to_string() << "\n";
        }
        std::cerr << "metalsync plan: " << loaded->label << " does not validate; the daemon would reject it\n";
        return k_exit_error;
    }
    // Observed state: live from Ironic when the configuration names one,
    // else what the daemon's store last saw (nothing when no daemon has run
    // against this state directory yet).
    ObservedState observed;
    std::map<std::string, NodeMemory> memory;
    std::vector<ClaimRow> claims;  // the provider's, from the store: those nodes are not Git's to plan
    std::string observed_from = "nothing observed yet (no Ironic configured, no store)";
    std::filesystem::path state_dir = !options.state_dir.empty() ? std::filesystem::path(options.state_dir)
                                      : config                   ? config->state_dir
                                                                 : std::filesystem::path();
    if (!state_dir.empty() && std::filesystem::exists(state_dir / "metalsync.db")) {
        auto reader = StoreReader::open(state_dir / "metalsync.db");
        if (!reader) {
            std::cerr << "metalsync plan: " << reader.error().message << "\n";
            return k_exit_error;
        }
        if (auto obs = reader->load_observed(); obs && obs->complete) {
            observed = std::move(*obs);
            observed_from = "the store's last observation";
        }
        // The node memory as the daemon keeps it (the same conversion), with
        // what was inspected: a node held for an inspection mismatch, or
        // inspected already, plans as it would in the daemon.
        if (auto statuses = reader->list_node_statuses()) {
            for (const auto& st : *statuses) {
                NodeMemory m = node_memory(st);
                // A changed spec starts over, as in the daemon.
                if (auto it = loaded->state->nodes.find(st.name);
                    it != loaded->state->nodes.end() && st.spec_hash != spec_hash(it->second)) {
                    m.spec_hash = spec_hash(it->second);
                    m.attempts = 0;
                    m.next_attempt_at = 0;
                }
                memory[st.name] = std::move(m);
            }
        }
        if (auto rows = reader->list_claims()) claims = std::move(*rows);
        if (auto inspections = reader->list_inspections()) {
            for (const auto& record : *inspections) {
                memory[record.name].inspection = inspection_memory(record);
            }
        }
    }
    if (config && (!config->ironic.endpoint.empty() || !config->ironic.cloud.empty())) {
        IronicConnection connection;
        if (!config->ironic.endpoint.empty()) {
            connection.endpoint = config->ironic.endpoint;
        } else {
            std::optional<std::filesystem::path> clouds_file;
            if (!config->ironic.clouds_file.empty()) clouds_file = config->ironic.clouds_file;
            auto cloud = load_cloud_config(clouds_file, config->ironic.cloud);
            if (!cloud) {
                std::cerr << "metalsync plan: " << cloud.error() << "\n";
                return k_exit_error;
            }
            connection = ironic_connection_from_cloud(*cloud);
        }
        connection.timeout = config->ironic.timeout;
        IronicClient client(connection);
        auto live = client.observe();
        if (!live) {
            std::cerr << "metalsync plan: cannot observe Ironic: " << live.error().describe() << "\n";
            return k_exit_error;
        }
        observed = std::move(*live);
        observed_from = "Ironic at " + client.endpoint();
    }
    // The instance names this bastion's nodes in Ironic (extra) as the daemon does.
    const std::string instance = config ? config->instance : std::string("metalsync");
    PlanInput input{*loaded->state, observed, memory, instance, static_cast<double>(std::time(nullptr)), {}, {}};
    input.claimed = provider::claim_holds(provider::pool_nodes(*loaded->state, observed),
                                          provider::claim_table_from_rows(claims, nullptr));
    Plan plan = plan_nodes(input);
    if (options.output == "json") {
        auto j = to_json(plan);
        j["revision"] = loaded->label;
        j["observed"] = observed_from;
        std::cout << j.dump(2) << "\n";
        return plan.empty() ? k_exit_ok : k_exit_findings;
    }
    std::cout << loaded->label << ": " << summary(*loaded->state) << "\n";
    std::cout << "observed: " << observed_from << "\n";
    if (plan.empty()) {
        std::cout << "no changes\n";
    } else {
        std::vector<std::vector<std::string>> rows{{"NODE", "ACTION", "REASON"}};
        for (const auto& a : plan.actions) {
            rows.push_back({a.node, to_string(a.verb), a.reason});
        }
        print_table(rows);
        std::cout << plan.actions.size() << " action" << (plan.actions.size() == 1 ? "" : "s") << "\n";
    }
    if (plan.mass_deletion_held) {
        std::cout << "held: " << plan.mass_deletion_message << "\n";
    }
    return plan.empty() ? k_exit_ok : k_exit_findings;
}

} // namespace metalsync
