#include "daemon/cli.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

#include "daemon/cli_clusters.hpp"
#include "daemon/cli_commands.hpp"
#include "daemon/cli_status.hpp"
#include "daemon/daemon_run.hpp"
#include "sources/git_worker.hpp"

namespace metalsync {

namespace {

void add_client_options(CLI::App* command, ClientOptions& options)
{
    options.socket = default_control_socket();
    command->add_option("-s,--socket", options.socket, "Control socket of the daemon (env METALSYNC_SOCKET)")
        ->capture_default_str();
    command->add_option("-o,--output", options.output, "text or json (json: the reply's arguments as they came)")
        ->check(CLI::IsMember({"text", "json"}));
}

} // namespace

int cli_main(int argc, char** argv)
{
    if (auto code = maybe_run_git_worker(argc, argv)) {
        return *code;
    }
    CLI::App app{"metalsync: bare-metal machines and Kubernetes clusters from a Git repository of YAML"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("metalsync ") + METALSYNC_VERSION);

    ValidateOptions validate;
    auto* validate_cmd = app.add_subcommand(
        "validate", "Check a repository (a directory or one file) the way the daemon would. Exit 0 valid, 1 invalid, "
                    "2 could not run.");
    validate_cmd->add_option("path", validate.path, "Directory or YAML file to check")->required();
    validate_cmd->add_option("-o,--output", validate.output, "text or json")->check(CLI::IsMember({"text", "json"}));

    PlanOptions plan;
    auto* plan_cmd = app.add_subcommand(
        "plan", "Show the actions the daemon would take. Exit 0 no changes, 1 changes, 2 error.");
    plan_cmd->add_option("--repo", plan.repo, "Plan from this directory instead of the configured Git remote");
    plan_cmd->add_option("-c,--config", plan.config, "Daemon configuration file")
        ->default_val("/etc/metalsync/metalsync.yaml");
    plan_cmd->add_option("--state-dir", plan.state_dir, "State directory (default: the config's stateDir)");
    plan_cmd->add_option("-o,--output", plan.output, "text or json")->check(CLI::IsMember({"text", "json"}));
    bool plan_daemon = false;
    std::string plan_socket = default_control_socket();
    plan_cmd->add_flag("--daemon", plan_daemon, "Ask the running daemon for its current plan instead");
    plan_cmd->add_option("-s,--socket", plan_socket, "With --daemon: control socket (env METALSYNC_SOCKET)")
        ->capture_default_str();

    DaemonOptions daemon;
    auto* daemon_cmd = app.add_subcommand("daemon", "Run the daemon (what the systemd unit starts)");
    daemon_cmd->add_option("-c,--config", daemon.config, "Daemon configuration file")->capture_default_str();
    daemon_cmd->add_flag("--check-config", daemon.check_config, "Check the configuration, print it and exit");
    daemon_cmd->add_option("--log-format", daemon.log_format, "text or json (default: the configuration's)")
        ->check(CLI::IsMember({"text", "json"}));

    StatusOptions status;
    auto* status_cmd = app.add_subcommand(
        "status", "The daemon's revision, Git and node summary. Exit 0 whenever the daemon answers, even with failing "
                  "nodes; 1 the daemon answered an error or --until-converged timed out; 2 no daemon.");
    add_client_options(status_cmd, status.client);
    status_cmd->add_flag("-w,--watch", status.watch, "Redraw until Ctrl-C");
    status_cmd->add_option("--interval", status.interval, "With --watch: time between redraws (500ms, 2s, ...)")
        ->capture_default_str();
    status_cmd->add_flag("--until-converged", status.until_converged,
                         "Watch until every node is at its goal, then exit 0 (implies --watch)");
    status_cmd->add_option("--timeout", status.timeout, "With --until-converged: give up (exit 1) after this long");

    NodesOptions nodes;
    auto* nodes_cmd = app.add_subcommand("nodes", "Every node: state, goal, condition. Exit 0 ok, 1 daemon error, 2 no "
                                                  "daemon.");
    add_client_options(nodes_cmd, nodes.client);
    nodes_cmd
        ->add_option("--condition", nodes.condition,
                     "Only nodes in this condition (at-goal, progressing, waiting, failed, orphaned, held, "
                     "maintenance, claimed)")
        ->check(CLI::IsMember({"at-goal", "progressing", "waiting", "failed", "orphaned", "held", "maintenance",
                               "claimed"}));

    NodeOptions node;
    auto* node_cmd = app.add_subcommand("node", "One node in detail: why it waits, its errors, events and actions");
    node_cmd->add_option("name", node.name, "Node name")->required();
    add_client_options(node_cmd, node.client);

    EventsOptions events;
    auto* events_cmd = app.add_subcommand("events", "Recent events, oldest first");
    add_client_options(events_cmd, events.client);
    events_cmd->add_option("--object", events.object, "Only events about this object (a node name, ...)");
    events_cmd->add_option("--since", events.since, "A duration back (10m, 2h) or a local time (2026-11-25 14:03)");
    events_cmd->add_option("--limit", events.limit, "At most this many, the most recent")->check(CLI::PositiveNumber);

    ClientOptions sync;
    auto* sync_cmd = app.add_subcommand("sync", "Poll Git and reconcile now instead of at the next tick");
    add_client_options(sync_cmd, sync);

    NodeActionOptions suspend;
    auto* suspend_cmd = app.add_subcommand("suspend", "Stop starting actions, for one node or for all");
    suspend_cmd->add_option("node", suspend.name, "Node name (default: every node)");
    add_client_options(suspend_cmd, suspend.client);

    NodeActionOptions resume;
    auto* resume_cmd = app.add_subcommand("resume", "Undo suspend, for one node or for all");
    resume_cmd->add_option("node", resume.name, "Node name (default: every node)");
    add_client_options(resume_cmd, resume.client);

    ClientOptions clusters;
    auto* clusters_cmd = app.add_subcommand(
        "clusters", "Cluster API clusters from Git: phase, Ready, control plane and worker replicas, version");
    add_client_options(clusters_cmd, clusters);

    ClusterOptions cluster;
    auto* cluster_cmd = app.add_subcommand(
        "cluster", "One cluster as clusterctl describe shows it: control plane, MachineDeployments, Machines, its "
                   "objects and events");
    cluster_cmd->add_option("name", cluster.name, "Cluster name")->required();
    cluster_cmd->add_option("-n,--namespace", cluster.namespace_, "Namespace, when the name is not unique");
    cluster_cmd->add_flag("!--no-grouping", cluster.grouping, "List every Machine instead of grouping alike ones");
    add_client_options(cluster_cmd, cluster.client);

    ObjectsOptions objects;
    auto* objects_cmd = app.add_subcommand(
        "objects", "Every Kubernetes object from Git (and those being pruned): state, source file, message");
    objects_cmd
        ->add_option("--state", objects.state,
                     "Only objects in this state (in-sync, applying, drifted, waiting, deleting, pruning, "
                     "orphaned, kept, error)")
        ->check(CLI::IsMember({"in-sync", "applying", "drifted", "waiting", "deleting", "pruning", "orphaned", "kept",
                               "error"}));
    add_client_options(objects_cmd, objects.client);

    KubeconfigOptions kubeconfig;
    auto* kubeconfig_cmd = app.add_subcommand(
        "kubeconfig", "Print a workload cluster's kubeconfig (the <name>-kubeconfig Secret) to stdout, read with the "
                      "daemon's management-cluster credentials; never logged");
    kubeconfig_cmd->add_option("name", kubeconfig.name, "Cluster name")->required();
    kubeconfig_cmd->add_option("-n,--namespace", kubeconfig.namespace_,
                               "The cluster's namespace (default: the configuration's kubernetes.namespace)");
    kubeconfig_cmd->add_option("-c,--config", kubeconfig.config, "Daemon configuration to take the kubeconfig from")
        ->capture_default_str();
    kubeconfig_cmd->add_option("--kubeconfig", kubeconfig.kubeconfig,
                               "The management cluster's kubeconfig (instead of the configuration's)");
    kubeconfig_cmd->add_option("--context", kubeconfig.context, "Context of that kubeconfig");

    ClientOptions version;
    auto* version_cmd = app.add_subcommand("version", "Print the version, and the daemon's when one answers");
    add_client_options(version_cmd, version);

    // An unknown command is named as such (CLI11 would say "A subcommand is required").
    if (argc > 1 && argv[1][0] != '-') {
        bool known = true;
        try {
            (void)app.get_subcommand(argv[1]);
        } catch (const CLI::OptionNotFound&) {
            known = false;
        }
        if (!known) {
            std::cerr << "metalsync: unknown command '" << argv[1] << "'; see metalsync --help\n";
            return 2;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }
    if (validate_cmd->parsed()) {
        return run_validate(validate);
    }
    if (plan_cmd->parsed()) {
        if (plan_daemon) {
            if (!plan.repo.empty() || plan_cmd->get_option("--config")->count() > 0) {
                std::cerr << "metalsync: plan: --daemon cannot be combined with --repo or --config\n";
                return 2;
            }
            return run_daemon_plan(ClientOptions{plan_socket, plan.output});
        }
        return run_plan(plan);
    }
    if (daemon_cmd->parsed()) {
        return run_daemon(daemon);
    }
    if (status_cmd->parsed()) {
        return run_status(status);
    }
    if (nodes_cmd->parsed()) {
        return run_nodes(nodes);
    }
    if (node_cmd->parsed()) {
        return run_node(node);
    }
    if (events_cmd->parsed()) {
        return run_events(events);
    }
    if (sync_cmd->parsed()) {
        return run_sync(sync);
    }
    if (suspend_cmd->parsed()) {
        return run_suspend(suspend, false);
    }
    if (resume_cmd->parsed()) {
        return run_suspend(resume, true);
    }
    if (clusters_cmd->parsed()) {
        return run_clusters(clusters);
    }
    if (cluster_cmd->parsed()) {
        return run_cluster(cluster);
    }
    if (objects_cmd->parsed()) {
        return run_objects(objects);
    }
    if (kubeconfig_cmd->parsed()) {
        return run_kubeconfig(kubeconfig);
    }
    if (version_cmd->parsed()) {
        return run_version(version);
    }
    return 2;
}

} // namespace metalsync
