// report.html (controller/src/report_html.h): overview and placement, task
// rows and states, HTML escaping of experiment strings, one SVG polyline per
// plotted series with every point inside the plot area, rates from counters,
// the series and row caps, and inputs without metrics, tasks or a start.
#include "../../controller/src/report_html.h"

#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

namespace gridemu::controller {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000'000'000;  // 2023-11-14T22:13:20Z
constexpr int64_t kS = 1'000'000'000;

TaskRecord Task(const std::string& name, uint32_t index, const std::string& vnode, TaskState st,
                std::optional<int> code, double start_s, double end_s, bool wait) {
  TaskRecord t;
  t.task_id = name + "/" + std::to_string(index);
  t.task_name = name;
  t.index = index;
  t.vnode = vnode;
  t.state = st;
  t.exit_code = code;
  t.wait = wait;
  t.start_unix_ns = kT0 + static_cast<int64_t>(start_s * kS);
  t.end_unix_ns = kT0 + static_cast<int64_t>(end_s * kS);
  return t;
}

ResultsInput BaseInput() {
  ResultsInput in;
  in.gridemu_version = "0.1.0";
  in.experiment.id = "ping-3";
  in.experiment.name = "ping";
  in.experiment.slice = "default";
  in.experiment.source_path = "examples/ping.yaml";
  in.experiment.yaml_sha256 = "abc123";
  in.experiment.seed = 42;
  in.experiment.duration = std::chrono::seconds(10);
  in.start_unix_ns = kT0;
  in.end_unix_ns = kT0 + 10 * kS;
  in.final_state = ExperimentState::kFinished;
  in.final_reason = "all waited tasks exited";
  return in;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

// The <svg> element with data-plot="id", or "" when there is none.
std::string Svg(const std::string& html, const std::string& id) {
  const size_t at = html.find("data-plot=\"" + id + "\"");
  if (at == std::string::npos) return "";
  const size_t begin = html.rfind("<svg", at);
  const size_t end = html.find("</svg>", at);
  return html.substr(begin, end + 6 - begin);
}

struct Area {
  double x0, y0, x1, y1;
};

Area PlotArea(const std::string& svg) {
  std::smatch m;
  const std::regex re(
      R"re(<rect class="frame area" x="([-\d.]+)" y="([-\d.]+)" width="([-\d.]+)" height="([-\d.]+)")re");
  EXPECT_TRUE(std::regex_search(svg, m, re)) << svg.substr(0, 400);
  if (m.empty()) return {0, 0, 0, 0};
  const double x = std::stod(m[1]), y = std::stod(m[2]);
  return {x, y, x + std::stod(m[3]), y + std::stod(m[4])};
}

struct Polyline {
  std::string series;
  std::vector<std::pair<double, double>> points;
};

std::vector<Polyline> Polylines(const std::string& svg) {
  std::vector<Polyline> out;
  const std::regex re(R"re(<polyline data-series="([^"]*)" stroke="[^"]*" fill="none" points="([^"]*)")re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
       ++it) {
    Polyline p;
    p.series = (*it)[1];
    const std::string pts = (*it)[2];
    const std::regex pt(R"(([-\d.]+),([-\d.]+))");
    for (auto j = std::sregex_iterator(pts.begin(), pts.end(), pt); j != std::sregex_iterator();
         ++j) {
      p.points.emplace_back(std::stod((*j)[1]), std::stod((*j)[2]));
    }
    out.push_back(std::move(p));
  }
  return out;
}

// Cumulative counter samples of `metric` of `subject`: values[i] at i seconds.
void Counter(ResultsInput& in, const std::string& subject, const std::string& metric,
             const std::vector<double>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    in.metrics.push_back(MetricSample{kT0 + static_cast<int64_t>(i) * kS, subject, metric,
                                      values[i]});
  }
}

TEST(ReportHtml, EscapesHtml) {
  EXPECT_EQ(HtmlEscape("a<b>&\"c'd"), "a&lt;b&gt;&amp;&quot;c&#39;d");
  EXPECT_EQ(HtmlEscape("plain \xC3\xA9"), "plain \xC3\xA9");
}

TEST(ReportHtml, OverviewPlacementAndTaskRows) {
  ResultsInput in = BaseInput();
  in.tasks.push_back(Task("ping", 0, "h1", TaskState::kExited, 0, 1.0, 2.5, true));
  in.tasks.push_back(Task("ping", 1, "h2", TaskState::kExited, 3, 1.5, 3.0, true));
  TaskRecord srv = Task("srv", 0, "r", TaskState::kKilled, std::nullopt, 0, 10, false);
  srv.signal = 9;
  srv.reason = "stopped at the end of the run (killed)";
  in.tasks.push_back(srv);
  TaskRecord never = Task("late", 0, "h3", TaskState::kFailed, std::nullopt, 0, 0, false);
  never.start_unix_ns.reset();
  never.end_unix_ns.reset();
  never.reason = "vnode h3 is gone";
  in.tasks.push_back(never);
  in.tasks[0].stdout_path = "/res/dir/tasks/ping/0.stdout";
  PlacementSummary p;
  p.algorithm = "metis-kway";
  p.vnodes_per_pnode = {{"host-a", 3}, {"host-b", 2}};
  p.cut_links = 4;
  p.cut_rate_bps = 2'000'000'000;
  p.imbalance = 1.05;
  in.placement = p;
  in.pnodes.push_back(PnodeReport{"host-a", "10.1.0.7", "6.1.0", "netem", "dev", 3});

  const std::string html = RenderReportHtml(in, "/res/dir");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  EXPECT_NE(html.find("<title>gridemu report: ping (ping-3)</title>"), std::string::npos);
  EXPECT_NE(html.find("<span class=\"badge finished\">finished</span> all waited tasks exited"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><th>seed</th><td>42</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<tr><th>gridemu version</th><td>0.1.0</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<tr><th>start</th><td>2023-11-14T22:13:20.000Z</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><th>ran</th><td>10.000 s</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<tr><th>pnodes used</th><td>2</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<tr><th>vnodes per pnode</th><td>host-a: 3, host-b: 2</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><th>cross-pnode links</th><td>4 ("), std::string::npos);
  EXPECT_NE(html.find("<tr><th>imbalance</th><td>1.050"), std::string::npos);
  EXPECT_NE(html.find("<td>10.1.0.7</td><td>6.1.0</td><td>netem</td>"), std::string::npos);

  // One row per instance: class, id (* = waited), vnode, state, outcome, code,
  // signal, start, end, duration.
  EXPECT_NE(html.find("<tr class=\"ok\"><td>ping/0*</td><td>h1</td><td>exited</td><td>exit 0</td>"
                      "<td class=\"n\">0</td><td class=\"n\"></td><td class=\"n\">1.000</td>"
                      "<td class=\"n\">2.500</td><td class=\"n\">1.500</td>"),
            std::string::npos)
      << html;
  EXPECT_NE(html.find("<tr class=\"fail\"><td>ping/1*</td><td>h2</td><td>exited</td>"
                      "<td>exit 3</td><td class=\"n\">3</td>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr class=\"stopped\"><td>srv/0</td><td>r</td><td>killed</td>"
                      "<td>stopped at end</td><td class=\"n\"></td><td class=\"n\">9</td>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr class=\"fail\"><td>late/0</td><td>h3</td><td>failed</td>"
                      "<td>failed to start</td>"),
            std::string::npos);
  EXPECT_NE(html.find("<td>vnode h3 is gone</td>"), std::string::npos);
  // The output under the results directory is a relative link.
  EXPECT_NE(html.find("<a href=\"tasks/ping/0.stdout\">stdout</a>"), std::string::npos);

  // Gantt: a bar per started instance, coloured by outcome; the never started
  // one is mentioned.
  const std::string gantt = Svg(html, "gantt");
  ASSERT_FALSE(gantt.empty());
  EXPECT_EQ(Count(gantt, "<rect class=\"bar "), 3u);
  EXPECT_EQ(Count(gantt, "<rect class=\"bar ok\""), 1u);
  EXPECT_EQ(Count(gantt, "<rect class=\"bar fail\""), 1u);
  EXPECT_EQ(Count(gantt, "<rect class=\"bar stopped\""), 1u);
  EXPECT_NE(html.find("1 instance(s) never started"), std::string::npos);

  // The per-task summary marks the task with a failure.
  EXPECT_NE(html.find("<tr class=\"fail\"><td>ping</td><td>yes</td><td class=\"n\">2</td>"),
            std::string::npos);
}

TEST(ReportHtml, EscapesEveryExperimentString) {
  ResultsInput in = BaseInput();
  in.experiment.name = "x\"><img src=x onerror=alert(1)>";
  in.final_reason = "<b>boom</b> & more";
  in.final_state = ExperimentState::kFailed;
  TaskRecord t = Task("<script>", 0, "<v>", TaskState::kExited, 1, 0, 1, true);
  t.task_id = "<script>/0";
  t.reason = "</td><script>alert(2)</script>";
  in.tasks.push_back(t);
  in.events.push_back(EventRow{0, 0, "link-set", "<a>--b", kS, kS + 2'000'000, "err <i>"});
  Counter(in, "<l>", "forward_tx_bytes", {0, 100});
  in.notes.push_back("note <u>");
  in.collected_files.push_back("files/h1/<x>.txt");

  const std::string html = RenderReportHtml(in, "");
  EXPECT_EQ(html.find("<script"), std::string::npos) << "no script at all";
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("<b>boom"), std::string::npos);
  EXPECT_EQ(html.find("<v>"), std::string::npos);
  EXPECT_EQ(html.find("<a>--b"), std::string::npos);
  EXPECT_EQ(html.find("<i>"), std::string::npos);
  EXPECT_EQ(html.find("<u>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;/0"), std::string::npos);
  EXPECT_NE(html.find("x&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;b&gt;boom&lt;/b&gt; &amp; more"), std::string::npos);
  EXPECT_NE(html.find("&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("data-series=\"&lt;l&gt; forward\""), std::string::npos);
  EXPECT_NE(html.find("<a href=\"files/h1/%3Cx%3E.txt\">files/h1/&lt;x&gt;.txt</a>"),
            std::string::npos);
  EXPECT_NE(html.find("<span class=\"badge failed\">failed</span>"), std::string::npos);
  // Self-contained: nothing is loaded from elsewhere.
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("src=\""), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
}

TEST(ReportHtml, RatesFromCountersAndGauges) {
  ResultsInput in = BaseInput();
  // 0, 1000, 3000 bytes at 0, 1, 2 s: 8000 then 16000 bit/s.
  Counter(in, "h1--r", "forward_tx_bytes", {0, 1000, 3000});
  // A counter that restarts (agent restart) counts from 0: 500 B in 1 s.
  Counter(in, "h1--r", "reverse_tx_bytes", {0, 2000, 500});
  Counter(in, "h1--r", "forward_dropped_loss", {0, 2, 2});
  Counter(in, "h1--r", "forward_dropped_queue", {0, 1, 5});
  Counter(in, "h1--r", "reverse_dropped_loss", {0, 0, 0});
  Counter(in, "h1", "cpu_seconds", {1.0, 1.5, 3.5});
  Counter(in, "h1", "memory_bytes", {1024, 4096, 2048});
  Counter(in, "h1", "pids", {1, 2, 3});

  const auto plots = BuildReportPlots(in);
  ASSERT_EQ(plots.size(), 4u);
  EXPECT_EQ(plots[0].id, "throughput");
  EXPECT_EQ(plots[0].unit, ReportUnit::kBitsPerSecond);
  ASSERT_EQ(plots[0].series.size(), 2u);
  EXPECT_EQ(plots[0].series[0].name, "h1--r forward");  // 3000 B sent > 2500 B
  EXPECT_DOUBLE_EQ(plots[0].series[0].total, 3000);
  ASSERT_EQ(plots[0].series[0].points.size(), 2u);
  EXPECT_DOUBLE_EQ(plots[0].series[0].points[0].first, 1.0);
  EXPECT_DOUBLE_EQ(plots[0].series[0].points[0].second, 8000);
  EXPECT_DOUBLE_EQ(plots[0].series[0].points[1].first, 2.0);
  EXPECT_DOUBLE_EQ(plots[0].series[0].points[1].second, 16000);
  EXPECT_EQ(plots[0].series[1].name, "h1--r reverse");
  EXPECT_DOUBLE_EQ(plots[0].series[1].points[1].second, 500 * 8);

  EXPECT_EQ(plots[1].id, "drops");
  ASSERT_EQ(plots[1].series.size(), 1u) << "a direction without drops is left out";
  EXPECT_EQ(plots[1].series[0].name, "h1--r forward");
  EXPECT_DOUBLE_EQ(plots[1].series[0].points[0].second, 3);  // loss 2 + queue 1
  EXPECT_DOUBLE_EQ(plots[1].series[0].points[1].second, 4);
  EXPECT_DOUBLE_EQ(plots[1].series[0].total, 7);

  EXPECT_EQ(plots[2].id, "cpu");
  ASSERT_EQ(plots[2].series.size(), 1u);
  EXPECT_DOUBLE_EQ(plots[2].series[0].points[0].second, 0.5);
  EXPECT_DOUBLE_EQ(plots[2].series[0].points[1].second, 2.0);

  EXPECT_EQ(plots[3].id, "memory");
  ASSERT_EQ(plots[3].series[0].points.size(), 3u);
  EXPECT_DOUBLE_EQ(plots[3].series[0].points[0].first, 0.0);
  EXPECT_DOUBLE_EQ(plots[3].series[0].points[1].second, 4096);
  EXPECT_DOUBLE_EQ(plots[3].series[0].total, 4096) << "memory ranks by peak";

  // Without any drop there is no drops plot.
  for (auto& m : in.metrics) {
    if (m.name.find("dropped") != std::string::npos) m.value = 0;
  }
  const auto no_drops = BuildReportPlots(in);
  ASSERT_EQ(no_drops.size(), 3u);
  EXPECT_EQ(no_drops[1].id, "cpu");
}

TEST(ReportHtml, OnePolylinePerSeriesWithPointsInsideThePlot) {
  ResultsInput in = BaseInput();
  in.tasks.push_back(Task("ping", 0, "h1", TaskState::kExited, 0, 0.5, 9.0, true));
  for (int l = 0; l < 3; ++l) {
    std::vector<double> v;
    for (int i = 0; i <= 10; ++i) v.push_back(1e6 * (l + 1) * i * i);
    Counter(in, "l" + std::to_string(l), "forward_tx_bytes", v);
    Counter(in, "l" + std::to_string(l), "reverse_tx_bytes", v);
  }
  Counter(in, "l0", "forward_dropped_queue", {0, 5, 5, 9, 20});
  Counter(in, "h1", "cpu_seconds", {0, 0.9, 1.8, 2.0});
  Counter(in, "h2", "cpu_seconds", {0, 0.1, 0.2, 0.3});
  Counter(in, "h1", "memory_bytes", {3 << 20, 5 << 20, 70 << 20});
  Counter(in, "h2", "memory_bytes", {1 << 20});  // a single sample

  const std::string html = RenderReportHtml(in, "");
  const auto plots = BuildReportPlots(in);
  ASSERT_EQ(plots.size(), 4u);
  for (const auto& plot : plots) {
    SCOPED_TRACE(plot.id);
    const std::string svg = Svg(html, plot.id);
    ASSERT_FALSE(svg.empty());
    const Area a = PlotArea(svg);
    EXPECT_GT(a.x1 - a.x0, 100);
    EXPECT_GT(a.y1 - a.y0, 100);
    const auto lines = Polylines(svg);
    ASSERT_EQ(lines.size(), plot.series.size());
    for (size_t i = 0; i < lines.size(); ++i) {
      EXPECT_EQ(lines[i].series, plot.series[i].name);
      ASSERT_EQ(lines[i].points.size(), plot.series[i].points.size());
      for (const auto& [x, y] : lines[i].points) {
        EXPECT_GE(x, a.x0);
        EXPECT_LE(x, a.x1);
        EXPECT_GE(y, a.y0);
        EXPECT_LE(y, a.y1);
      }
      // Later points are to the right.
      for (size_t j = 1; j < lines[i].points.size(); ++j) {
        EXPECT_GT(lines[i].points[j].first, lines[i].points[j - 1].first);
      }
    }
    // A legend entry per series.
    const size_t after = html.find("</svg>", html.find("data-plot=\"" + plot.id + "\""));
    const std::string legend = html.substr(after, html.find("</ul>", after) - after);
    EXPECT_EQ(Count(legend, "<li>"), plot.series.size());
  }
  EXPECT_EQ(Polylines(Svg(html, "throughput")).size(), 6u);
  // Throughput grows: the last point of each series is above (smaller y) the first.
  for (const auto& l : Polylines(Svg(html, "throughput"))) {
    EXPECT_LT(l.points.back().second, l.points.front().second);
  }
  // The largest value touches the nice top of the axis or stays under it;
  // units are in the axis labels.
  EXPECT_NE(html.find("throughput (Mbit/s)"), std::string::npos);
  EXPECT_NE(html.find("drops (packets/s)"), std::string::npos);
  EXPECT_NE(html.find("CPU (cores)"), std::string::npos);
  EXPECT_NE(html.find("memory (MiB)"), std::string::npos);
  EXPECT_NE(html.find("time since start (s)"), std::string::npos);
  EXPECT_EQ(Count(Svg(html, "memory"), "<circle"), 1u) << "a single point is drawn as a dot";
  EXPECT_EQ(html.find("Showing the top"), std::string::npos) << "nothing capped";
}

TEST(ReportHtml, CapsSeriesAndRows) {
  ResultsInput in = BaseInput();
  // 25 links; link i sends i * 1000 bytes per second.
  for (int l = 0; l < 25; ++l) {
    Counter(in, "link" + std::to_string(l), "tx_bytes", {0, 1000.0 * l, 2000.0 * l});
  }
  for (uint32_t i = 0; i < 250; ++i) {
    in.tasks.push_back(Task("t", i, "h", TaskState::kExited, i == 240 ? 1 : 0, 1, 2, true));
  }
  ReportOptions opt;
  opt.max_series = 10;
  opt.max_gantt_rows = 200;
  opt.max_table_rows = 220;

  const auto plots = BuildReportPlots(in, opt);
  ASSERT_EQ(plots.size(), 1u);
  EXPECT_EQ(plots[0].candidates, 25u);
  ASSERT_EQ(plots[0].series.size(), 10u);
  EXPECT_EQ(plots[0].series.front().name, "link24") << "top by total first";
  EXPECT_EQ(plots[0].series.back().name, "link15");

  const std::string html = RenderReportHtml(in, "", opt);
  EXPECT_EQ(Polylines(Svg(html, "throughput")).size(), 10u);
  EXPECT_NE(html.find("Showing the top 10 of 25 series by bytes sent"), std::string::npos);

  const std::string gantt = Svg(html, "gantt");
  EXPECT_EQ(Count(gantt, "<rect class=\"bar "), 200u);
  EXPECT_NE(gantt.find(">t/240</text>"), std::string::npos) << "the failed one is kept";
  EXPECT_EQ(Count(gantt, "<rect class=\"bar fail\""), 1u);
  EXPECT_NE(html.find("<strong>50 more</strong> started instances not shown"), std::string::npos);
  EXPECT_EQ(Count(html, "<tr class=\"ok\"><td>t/"), 219u);
  EXPECT_EQ(Count(html, "<tr class=\"fail\"><td>t/240*"), 1u);
  EXPECT_NE(html.find("<strong>30 more</strong> instances not shown"), std::string::npos);

  // Long series are averaged down to max_points.
  ResultsInput many = BaseInput();
  std::vector<double> v;
  for (int i = 0; i <= 5000; ++i) v.push_back(125.0 * i);  // 1000 bit/s throughout
  Counter(many, "l", "tx_bytes", v);
  ReportOptions few;
  few.max_points = 100;
  const auto dec = BuildReportPlots(many, few);
  ASSERT_EQ(dec.size(), 1u);
  ASSERT_EQ(dec[0].series[0].points.size(), 100u);
  for (const auto& [t, bps] : dec[0].series[0].points) EXPECT_NEAR(bps, 1000, 1e-6);
}

TEST(ReportHtml, NoMetricsNoTasksNoEventsNeverRan) {
  ResultsInput in;
  in.experiment.id = "empty-1";
  in.experiment.name = "empty";
  in.final_state = ExperimentState::kFailed;
  in.final_reason = "placement failed";
  EXPECT_TRUE(BuildReportPlots(in).empty());
  const std::string html = RenderReportHtml(in, "/tmp/x");
  EXPECT_NE(html.find("</html>"), std::string::npos);
  EXPECT_NE(html.find("The experiment has no task instances."), std::string::npos);
  EXPECT_NE(html.find("No timeline events."), std::string::npos);
  EXPECT_NE(html.find("No metrics were recorded."), std::string::npos);
  EXPECT_NE(html.find("<tr><th>start</th><td>never ran</td></tr>"), std::string::npos);
  EXPECT_EQ(html.find("<svg"), std::string::npos);
  EXPECT_EQ(html.find("<polyline"), std::string::npos);

  // Metrics that cannot be plotted (pids; a counter sampled once: no rate)
  // are not a plot either.
  Counter(in, "h1", "pids", {1, 2});
  Counter(in, "h1--r", "forward_tx_bytes", {5000});
  EXPECT_TRUE(BuildReportPlots(in).empty());
  EXPECT_NE(RenderReportHtml(in, "").find("No metrics were recorded that can be plotted."),
            std::string::npos);

  // Tasks that never started: the table, no Gantt chart.
  ResultsInput pending = BaseInput();
  TaskRecord t = Task("p", 0, "h", TaskState::kPending, std::nullopt, 0, 0, true);
  t.start_unix_ns.reset();
  t.end_unix_ns.reset();
  pending.tasks.push_back(t);
  const std::string p = RenderReportHtml(pending, "");
  EXPECT_NE(p.find("No task instance started."), std::string::npos);
  EXPECT_EQ(p.find("data-plot=\"gantt\""), std::string::npos);
  EXPECT_NE(p.find("<tr class=\"running\"><td>p/0*</td><td>h</td><td>pending</td>"),
            std::string::npos);
}

TEST(ReportHtml, EventsWithPlannedAppliedAndLag) {
  ResultsInput in = BaseInput();
  in.events.push_back(EventRow{0, 0, "link-set", "h1--r", 2 * kS, 2 * kS + 1'600'000, ""});
  in.events.push_back(EventRow{1, 3, "node-kill", "h2", 4 * kS, 4 * kS + 500'000, "h2 gone"});
  in.events.push_back(EventRow{2, 0, "node-start", "h2", 9 * kS, std::nullopt, ""});
  const std::string html = RenderReportHtml(in, "");
  EXPECT_NE(html.find("3 event action(s): 1 applied, 1 failed, 1 not reached."),
            std::string::npos);
  EXPECT_NE(html.find("median 1.050 ms, max 1.600 ms"), std::string::npos);
  EXPECT_NE(html.find("<tr class=\"ok\"><td class=\"n\">0</td><td class=\"n\">0</td>"
                      "<td>link-set</td><td>h1--r</td><td class=\"n\">2.000</td>"
                      "<td class=\"n\">2.002</td><td class=\"n\">1.600</td><td></td></tr>"),
            std::string::npos)
      << html;
  EXPECT_NE(html.find("<tr class=\"fail\"><td class=\"n\">1</td><td class=\"n\">3</td>"
                      "<td>node-kill</td>"),
            std::string::npos);
  EXPECT_NE(html.find("<td>h2 gone</td>"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"n\">not reached</td>"), std::string::npos);
  ReportOptions opt;
  opt.max_event_rows = 2;
  EXPECT_NE(RenderReportHtml(in, "", opt).find("<strong>1 more</strong> event actions"),
            std::string::npos);
}

}  // namespace
}  // namespace gridemu::controller
