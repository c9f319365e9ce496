// The `gridemu` command (DESIGN.md §1).
#include <CLI/CLI.hpp>

#include <iostream>

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

  auto* convert = topo->add_subcommand("convert", "Convert a GML topology to an experiment file");
  convert->add_option("IN", file, "topology .gml")->required();
  convert->add_option("--to", to, "target format: yaml")->check(CLI::IsMember({"yaml"}));
  convert->callback([&] { rc = gridemu::cli::TopoConvert(file, to, std::cout, std::cerr); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return rc;
}
