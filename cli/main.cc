// The `gridemu` command (DESIGN.md §1).
#include <CLI/CLI.hpp>

#include <iostream>

#include "gridemu/cli/clean.h"
#include "gridemu/cli/client.h"
#include "gridemu/cli/run.h"
#include "gridemu/cli/topo.h"

int main(int argc, char** argv) {
  CLI::App app{"gridemu: a large-scale distributed-system emulator (Grid/P2P testbed)", "gridemu"};
  app.set_version_flag("--version", std::string("gridemu ") + GRIDEMU_VERSION);
  app.require_subcommand(1);

  auto* topo = app.add_subcommand("topo", "Offline work on topologies and experiment files");
  topo->require_subcommand(1);
  int rc = 0;
  std::string file, format = "dot", to = "yaml";
  bool links = false, json = false;

  auto* validate = topo->add_subcommand("validate", "Check an experiment file (or GML); exit 0 if valid, 1 with every error");
  validate->add_option("FILE", file, "experiment .yaml or topology .gml")->required();
  validate->callback([&] { rc = gridemu::cli::TopoValidate(file, std::cout, std::cerr); });

  auto* stats = topo->add_subcommand("stats", "vnodes, links, degree distribution, diameter, components, link delays");
  stats->add_option("FILE", file, "experiment .yaml or topology .gml")->required();
  stats->add_flag("--links", links, "list every link with its delay and rate");
  stats->add_flag("--json", json, "print JSON instead of text");
  stats->callback([&] { rc = gridemu::cli::TopoStats(file, links, json, std::cout, std::cerr); });

  auto* render = topo->add_subcommand("render", "Print the graph as Graphviz DOT or JSON");
  render->add_option("FILE", file, "experiment .yaml or topology .gml")->required();
  render->add_option("--format", format, "dot | json")->check(CLI::IsMember({"dot", "json"}));
  render->callback([&] { rc = gridemu::cli::TopoRender(file, format, std::cout, std::cerr); });

  auto* paths = topo->add_subcommand("paths", "Path delay, rate, loss and hops between every pair of hosts");
  paths->add_option("FILE", file, "experiment .yaml or topology .gml")->required();
  paths->add_flag("--json", json, "print JSON instead of text");
  paths->callback([&] { rc = gridemu::cli::TopoPaths(file, json, std::cout, std::cerr); });

  auto* convert = topo->add_subcommand("convert", "Convert a GML topology to an experiment file");
  convert->add_option("IN", file, "topology .gml")->required();
  convert->add_option("--to", to, "target format: yaml")->check(CLI::IsMember({"yaml"}));
  convert->callback([&] { rc = gridemu::cli::TopoConvert(file, to, std::cout, std::cerr); });

  gridemu::cli::CleanArgs clean_args;
  auto* clean = app.add_subcommand("clean", "Remove gridemu's leftover objects (namespaces, interfaces, qdiscs, rules, cgroups, processes) from this machine");
  clean->add_option("--experiment", clean_args.experiment, "only this experiment's objects");
  clean->add_flag("--dry-run", clean_args.dry_run, "list what would be removed, remove nothing");
  clean->add_option("--prefix", clean_args.prefix, "object name prefix (the agents' --prefix)")->capture_default_str();
  clean->add_option("--state-dir", clean_args.state_dir, "agent records (the agents' --state-dir); default /run/<prefix>-agent");
  clean->callback([&] { rc = gridemu::cli::Clean(clean_args, std::cout, std::cerr); });

  // `gridemu run`: embedded controller + local agent.
  gridemu::cli::RunArgs run_args;
  auto* run = app.add_subcommand("run", "Run an experiment on this machine: an embedded controller and a local agent, progress, results on disk, teardown at the end or on Ctrl-C");
  run->add_option("FILE", run_args.file, "experiment .yaml")->required();
  run->add_option("--results", run_args.results, "base directory of results directories")->capture_default_str();
  run->add_flag("--keep", run_args.keep, "keep the working files (raw $GRIDEMU_OUT, controller.db) in the results directory");
  run->add_option("--agent-prefix", run_args.agent_prefix, "object name prefix of the local agent (netns, cgroups, tags)")->capture_default_str();
  run->add_option("--progress", run_args.progress, "auto | tty | plain | none")->check(CLI::IsMember({"auto", "tty", "plain", "none"}))->capture_default_str();
  run->add_option("--http-port", run_args.http_port, "port of the run's HTTP API on 127.0.0.1 (0 = any)")->capture_default_str();
  run->add_flag("--simulate", run_args.simulate, "simulated agent: tasks run as plain host processes, no namespaces, links or shaping (no root needed)");
  run->callback([&] { rc = gridemu::cli::Run(run_args, std::cout, std::cerr); });

  // Client commands to a running controller (or `gridemu run`).
  gridemu::cli::ClientArgs client;
  auto add_client_opts = [&](CLI::App* cmd) {
    cmd->add_option("--controller", client.controller, "controller URL (default: $GRIDEMU_CONTROLLER, a running `gridemu run`, http://127.0.0.1:7080)");
    cmd->add_option("--slice", client.slice, "slice (default: the controller's 'default')");
    cmd->add_option("--token", client.token, "slice API token (default: $GRIDEMU_TOKEN)");
    cmd->add_flag("--json", client.json, "print the controller's JSON");
  };
  std::string id, task;
  bool want_stderr = false;
  uint64_t tail = 0;
  auto* submit = app.add_subcommand("submit", "Submit an experiment to a controller; prints its id");
  submit->add_option("FILE", file, "experiment .yaml")->required();
  add_client_opts(submit);
  submit->callback([&] { rc = gridemu::cli::Submit(client, file, std::cout, std::cerr); });
  auto* status = app.add_subcommand("status", "An experiment's state and history, or the slice's experiments");
  status->add_option("ID", id, "experiment id (none: list them)");
  add_client_opts(status);
  status->callback([&] { rc = gridemu::cli::Status(client, id, std::cout, std::cerr); });
  auto* logs = app.add_subcommand("logs", "A task instance's output");
  logs->add_option("ID", id, "experiment id")->required();
  logs->add_option("--task", task, "task instance, e.g. leech/3")->required();
  logs->add_flag("--stderr", want_stderr, "standard error instead of standard output");
  logs->add_option("--tail", tail, "last N bytes (default: the controller's, 64 KiB)");
  add_client_opts(logs);
  logs->callback([&] { rc = gridemu::cli::Logs(client, id, task, want_stderr, tail, std::cout, std::cerr); });
  auto* results = app.add_subcommand("results", "An experiment's results directory and summary");
  results->add_option("ID", id, "experiment id")->required();
  add_client_opts(results);
  results->callback([&] { rc = gridemu::cli::Results(client, id, std::cout, std::cerr); });
  auto* cancel = app.add_subcommand("cancel", "Cancel an experiment (its agents tear it down)");
  cancel->add_option("ID", id, "experiment id")->required();
  add_client_opts(cancel);
  cancel->callback([&] { rc = gridemu::cli::Cancel(client, id, std::cout, std::cerr); });
  auto* hosts = app.add_subcommand("hosts", "The pnodes registered with the controller and their state");
  add_client_opts(hosts);
  hosts->callback([&] { rc = gridemu::cli::Hosts(client, std::cout, std::cerr); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return rc;
}
