#include "daemon/cli_clusters.hpp"

#include <iostream>
#include <map>
#include <tuple>

#include "daemon/cli_detail.hpp"
#include "daemon/daemon_config.hpp"
#include "reconcilers/kubernetes/kube_client.hpp"

namespace metalsync {

using namespace cli_detail;

namespace {

std::string ready_of(const json& node)
{
    const json& ready = field(node, "ready");
    if (ready.is_object()) return or_dash(str(ready, "status"));
    if (ready.is_boolean()) return ready.get<bool>() ? "True" : "False";
    return "-";
}

std::string replicas_text(const json& node)
{
    const json& r = field(node, "replicas");
    if (!r.is_object()) return "";
    std::string desired = str(r, "desired");
    if (desired.empty()) return "";
    std::string ready = str(r, "ready");
    std::string updated = str(r, "updated");
    return (ready.empty() ? "0" : ready) + "/" + desired + " ready, " + (updated.empty() ? "0" : updated) + " updated";
}

std::string message_of(const json& node)
{
    const json& ready = field(node, "ready");
    std::string message;
    if (ready.is_object() && str(ready, "status") != "True") {
        message = str(ready, "reason");
        if (auto m = str(ready, "message"); !m.empty()) message += (message.empty() ? "" : ": ") + m;
    }
    if (field(node, "deleting") == true) message = "deleting" + (message.empty() ? "" : "; " + message);
    return truncate(message, 80);
}

using Rows = std::vector<std::vector<std::string>>;

void add_machines(Rows& rows, const json& machines, const std::string& prefix, bool grouping)
{
    if (!machines.is_array()) return;
    // Alike machines (same Ready, phase, version, deleting) collapse into one line.
    std::vector<std::pair<std::tuple<std::string, std::string, std::string, bool>, std::vector<const json*>>> groups;
    for (const auto& m : machines) {
        auto key = std::make_tuple(ready_of(m), str(m, "phase"), str(m, "version"), field(m, "deleting") == true);
        bool placed = false;
        // A machine on one of metalsync's own nodes is a server: each keeps its line.
        if (grouping && str(m, "ironicNode").empty() && str(m, "step").empty()) {
            for (auto& [k, members] : groups) {
                if (k == key) {
                    members.push_back(&m);
                    placed = true;
                    break;
                }
            }
        }
        if (!placed) groups.push_back({key, {&m}});
    }
    for (std::size_t g = 0; g < groups.size(); ++g) {
        const bool last = g + 1 == groups.size();
        const auto& [key, members] = groups[g];
        const std::string branch = prefix + (last ? "└─" : "├─");
        if (members.size() == 1) {
            const json& m = *members.front();
            std::string note = message_of(m);
            if (auto node = str(m, "node"); !node.empty()) note = "node " + node + (note.empty() ? "" : "; " + note);
            if (auto ironic = str(m, "ironicNode"); !ironic.empty() || !str(m, "step").empty()) {
                // metalsync's own provider: the bare-metal node under the machine, and why it waits.
                std::string metal = ironic.empty() ? "no Ironic node yet"
                                                   : "Ironic " + ironic + " (" + or_dash(str(m, "provisionState")) + ")";
                const std::string step = str(m, "step");
                if (step != "in-sync" && !str(m, "message").empty()) metal += ": " + str(m, "message");
                note = truncate(metal, 80) + (note.empty() ? "" : "; " + note);
            }
            rows.push_back({branch + "Machine/" + str(m, "name"), ready_of(m), or_dash(str(m, "phase")), "",
                            or_dash(str(m, "version")), note});
        } else {
            std::string names;
            for (const json* m : members) names += (names.empty() ? "" : ", ") + str(*m, "name");
            rows.push_back({branch + std::to_string(members.size()) + " Machines...", std::get<0>(key),
                            or_dash(std::get<1>(key)), "", or_dash(std::get<2>(key)),
                            std::string(std::get<3>(key) ? "deleting; " : "") + "See " + truncate(names, 70)});
        }
    }
}

} // namespace

std::string render_cluster_list(const json& arguments)
{
    const json& clusters = field(arguments, "clusters");
    Rows rows{{"NAMESPACE", "NAME", "PHASE", "READY", "CONTROL PLANE", "WORKERS", "VERSION", "MESSAGE"}};
    if (clusters.is_array()) {
        for (const auto& c : clusters) {
            const json& cp = field(c, "controlPlane");
            const json& w = field(c, "workers");
            auto count = [](const json& r) {
                return or_dash(str(r, "ready")) + "/" + or_dash(str(r, "desired")) +
                       (str(r, "updated") != str(r, "desired") ? " (" + or_dash(str(r, "updated")) + " updated)" : "");
            };
            std::string version = str(cp, "version");
            if (auto wv = str(w, "version"); !wv.empty() && wv != version) version += " / " + wv;
            std::string message = str(c, "reason");
            if (field(c, "deleting") == true) {
                message = "deleting, " + or_dash(str(c, "machineCount")) + " machines left";
            }
            rows.push_back({str(c, "namespace"), str(c, "name"), or_dash(str(c, "phase")), or_dash(str(c, "ready")),
                            cp.is_object() ? count(cp) : "-", count(w), or_dash(version), message});
        }
    }
    std::string out = table(rows);
    const json& kube = field(arguments, "kubernetes");
    if (auto error = str(kube, "error"); !error.empty()) out += "\nkubernetes: " + error + " (showing what was last known)\n";
    return out;
}

std::string render_cluster(const json& arguments, bool grouping, std::int64_t now)
{
    const json& c = field(arguments, "cluster");
    Rows rows{{"NAME", "READY", "PHASE", "REPLICAS", "VERSION", "MESSAGE"}};
    rows.push_back({"Cluster/" + str(c, "name"), ready_of(c), or_dash(str(c, "phase")), "", "", message_of(c)});
    const json& infra = field(c, "infrastructure");
    const json& cp = field(c, "controlPlane");
    const json& mds = field(c, "machineDeployments");
    const json& others = field(c, "otherMachines");
    const bool has_workers = (mds.is_array() && !mds.empty()) || (others.is_array() && !others.empty());
    if (infra.is_object()) {
        const bool last = !cp.is_object() && !has_workers;
        rows.push_back({std::string(last ? "└─" : "├─") + "ClusterInfrastructure - " + str(infra, "kind") + "/" +
                            str(infra, "name"),
                        ready_of(infra), "", "", "", ""});
    }
    if (cp.is_object()) {
        const bool last = !has_workers;
        rows.push_back({std::string(last ? "└─" : "├─") + "ControlPlane - " + str(cp, "kind") + "/" + str(cp, "name"),
                        ready_of(cp), "", replicas_text(cp), or_dash(str(cp, "version")), message_of(cp)});
        add_machines(rows, field(cp, "machines"), last ? "  " : "│ ", grouping);
    }
    if (has_workers) {
        rows.push_back({"└─Workers", "", "", "", "", ""});
        const std::size_t md_count = mds.is_array() ? mds.size() : 0;
        const bool has_others = others.is_array() && !others.empty();
        for (std::size_t i = 0; i < md_count; ++i) {
            const json& md = mds[i];
            const bool last = i + 1 == md_count && !has_others;
            rows.push_back({std::string("  ") + (last ? "└─" : "├─") + "MachineDeployment/" + str(md, "name"),
                            ready_of(md), or_dash(str(md, "phase")), replicas_text(md), or_dash(str(md, "version")),
                            message_of(md)});
            add_machines(rows, field(md, "machines"), std::string("  ") + (last ? "  " : "│ "), grouping);
        }
        if (has_others) {
            rows.push_back({"  └─Other", "", "", "", "", ""});
            add_machines(rows, others, "    ", grouping);
        }
    }
    std::string out = table(rows);
    const json& finalizers = field(c, "finalizers");
    if (field(c, "deleting") == true) {
        out += "\nDeleting: " + or_dash(str(c, "machineCount")) + " machines left; finalizers: " +
               or_dash(list_text(finalizers)) + "\n";
    }
    const json& objects = field(arguments, "objects");
    if (objects.is_array() && !objects.empty()) {
        Rows object_rows{{"OBJECT", "STATE", "SOURCE", "MESSAGE"}};
        for (const auto& o : objects) {
            object_rows.push_back({str(o, "kind") + "/" + str(o, "name"), str(o, "state"), str(o, "source"),
                                   truncate(str(o, "message"), 90)});
        }
        out += "\nObjects in namespace " + str(c, "namespace") + ":\n" + table(object_rows, "  ");
    }
    const json& events = field(arguments, "events");
    if (events.is_array() && !events.empty()) {
        out += "\nRecent events:\n";
        Rows event_rows;
        for (auto it = events.rbegin(); it != events.rend(); ++it) {
            event_rows.push_back({age_text(field(*it, "time"), now), str(*it, "name"), str(*it, "message")});
        }
        out += table(event_rows, "  ");
    }
    const json& kube = field(arguments, "kubernetes");
    if (auto error = str(kube, "error"); !error.empty()) out += "\nkubernetes: " + error + " (showing what was last known)\n";
    return out;
}

std::string render_objects(const json& arguments)
{
    Rows rows{{"KIND", "NAMESPACE", "NAME", "STATE", "SOURCE", "MESSAGE"}};
    const json& objects = field(arguments, "objects");
    if (objects.is_array()) {
        for (const auto& o : objects) {
            rows.push_back({str(o, "kind"), or_dash(str(o, "namespace")), str(o, "name"), str(o, "state"),
                            or_dash(str(o, "source")), truncate(str(o, "message"), 100)});
        }
    }
    std::string out = table(rows);
    const json& pending = field(arguments, "pending");
    if (pending.is_array() && !pending.empty()) {
        out += "\nPending:\n";
        for (const auto& p : pending) out += "  " + str(p, "verb") + " " + str(p, "object") + ": " + str(p, "reason") + "\n";
    }
    const json& kube = field(arguments, "kubernetes");
    if (auto error = str(kube, "error"); !error.empty()) out += "\nkubernetes: " + error + "\n";
    return out;
}

int run_clusters(const ClientOptions& options)
{
    auto outcome = call_daemon(options, "cluster-list");
    if (!outcome.reply) return outcome.exit_code;
    if (is_json(options)) {
        print_json(*outcome.reply);
        return outcome.exit_code;
    }
    if (outcome.exit_code != k_exit_ok) return outcome.exit_code;
    std::cout << render_cluster_list(outcome.reply->arguments);
    return k_exit_ok;
}

int run_cluster(const ClusterOptions& options)
{
    json arguments{{"name", options.name}};
    if (!options.namespace_.empty()) arguments["namespace"] = options.namespace_;
    auto outcome = call_daemon(options.client, "cluster-get", arguments);
    if (outcome.exit_code != k_exit_ok) return outcome.exit_code;
    if (is_json(options.client)) {
        print_json(*outcome.reply);
    } else {
        std::cout << render_cluster(outcome.reply->arguments, options.grouping, now_seconds());
    }
    return k_exit_ok;
}

int run_objects(const ObjectsOptions& options)
{
    json arguments = json::object();
    if (!options.state.empty()) arguments["state"] = options.state;
    auto outcome = call_daemon(options.client, "kube-object-list", arguments);
    if (!outcome.reply) return outcome.exit_code;
    if (is_json(options.client)) {
        print_json(*outcome.reply);
        return outcome.exit_code;
    }
    if (outcome.exit_code != k_exit_ok) return outcome.exit_code;
    std::cout << render_objects(outcome.reply->arguments);
    return k_exit_ok;
}

int run_kubeconfig(const KubeconfigOptions& options)
{
    std::filesystem::path kubeconfig = options.kubeconfig;
    std::string context = options.context;
    std::string namespace_ = options.namespace_;
    if (kubeconfig.empty()) {
        auto cfg = load_daemon_config(options.config);
        if (!cfg) {
            std::cerr << "metalsync: kubeconfig: cannot read the daemon configuration " << options.config << ":\n";
            for (const auto& d : cfg.error()) std::cerr << "  " << d.to_string() << "\n";
            std::cerr << "(give the management cluster's kubeconfig with --kubeconfig instead)\n";
            return 2;
        }
        kubeconfig = cfg->kubernetes.kubeconfig;
        if (context.empty()) context = cfg->kubernetes.context;
        if (namespace_.empty()) namespace_ = cfg->kubernetes.namespace_;
    }
    auto connection = load_kubeconfig(kubeconfig, context);
    if (!connection) {
        std::cerr << "metalsync: kubeconfig: " << connection.error() << "\n";
        return 2;
    }
    if (namespace_.empty()) namespace_ = connection->default_namespace;
    KubeClient client(std::move(*connection));
    const ObjectRef ref{"v1", "Secret", namespace_, options.name + "-kubeconfig"};
    auto secret = client.get(ref);
    if (!secret) {
        std::cerr << "metalsync: kubeconfig: " << secret.error().describe() << "\n";
        return 1;
    }
    if (!*secret) {
        std::cerr << "metalsync: kubeconfig: no Secret " << namespace_ << "/" << ref.name
                  << " on the management cluster: is the cluster's name right (metalsync clusters), and is its first "
                     "control-plane machine up? Cluster API writes the Secret once the control plane is initialized\n";
        return 1;
    }
    const json& data = (**secret).contains("data") ? (**secret)["data"] : json();
    if (!data.is_object() || !data.contains("value") || !data["value"].is_string()) {
        std::cerr << "metalsync: kubeconfig: Secret " << namespace_ << "/" << ref.name << " has no data.value\n";
        return 1;
    }
    auto decoded = base64_decode(data["value"].get<std::string>());
    if (!decoded) {
        std::cerr << "metalsync: kubeconfig: Secret " << namespace_ << "/" << ref.name
                  << ": data.value is not valid base64\n";
        return 1;
    }
    std::cout << *decoded;
    if (!decoded->empty() && decoded->back() != '\n') std::cout << "\n";
    return 0;
}

} // namespace metalsync
