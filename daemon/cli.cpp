#include "daemon/cli.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

#include "daemon/cli_commands.hpp"
#include "sources/git_worker.hpp"

namespace metalsync {

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

    auto* version_cmd = app.add_subcommand("version", "Print the version");

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
        return run_plan(plan);
    }
    if (version_cmd->parsed()) {
        std::cout << "metalsync " << METALSYNC_VERSION << "\n";
        return 0;
    }
    return 2;
}

} // namespace metalsync
