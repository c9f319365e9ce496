// Tests of the controller's HTTP JSON API: the server runs in-process on
// 127.0.0.1 with an ephemeral port, backed by a StoreService over an
// in-memory store, and is driven with real HTTP/1.1 requests over a small
// raw-socket client.

#include "gridemu/controller/http_api.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gridemu/controller/service.h"
#include "gridemu/controller/store.h"
#include "gridemu/experiments/parse.h"

namespace gridemu::controller {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  json j;  // the parsed body (discarded when not JSON)
};

// A blocking HTTP/1.1 client on one TCP connection (keep-alive).
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{10, 0};  // no test may hang on a silent server
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return connected_; }

  // Writes raw bytes; false when the peer closed.
  bool Write(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one response (Content-Length framed; no body after HEAD). status 0 on failure.
  Reply Read(bool head_request = false) {
    Reply r;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return r;
    }
    std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return r;
    r.status = std::stoi(status_line.substr(9, 3));
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string line = head.substr(pos, e - pos);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t v = line.find_first_not_of(' ', colon + 1);
        r.headers[name] = v == std::string::npos ? "" : line.substr(v);
      }
      pos = e + 2;
    }
    size_t length = r.headers.count("content-length") && !head_request
                        ? std::stoul(r.headers["content-length"])
                        : 0;
    while (buf_.size() < length) {
      if (!Fill()) return Reply{};
    }
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    r.j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    return r;
  }

  Reply Send(const std::string& method, const std::string& target,
             const std::vector<std::pair<std::string, std::string>>& headers = {},
             const std::string& body = "") {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    if (!body.empty() || method == "POST")
      req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n";
    req += body;
    Write(req);  // a server that answers early may close before all is sent
    return Read();
  }

  // True when the server closed the connection (read returns 0 or reset).
  bool PeerClosed() {
    char c;
    ssize_t n = recv(fd_, &c, 1, 0);
    return n <= 0;
  }

 private:
  bool Fill() {
    char tmp[65536];
    ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

const std::vector<std::pair<std::string, std::string>> kYaml = {
    {"Content-Type", "application/yaml"}};

constexpr const char* kGood = R"(name: ping
duration: 1m
topology:
  nodes: {a: {}, b: {}}
  links:
    - {endpoints: [a, b], rate: 10mbit, delay: 5ms}
workload:
  - {name: ping, on: a, run: "ping -c 3 b", wait: true}
)";

// "YAML syntax error" at a known position (an unclosed flow mapping).
constexpr const char* kMalformed = R"(name: t
duration: 10m
topology:
  nodes: {a: {}, b: {}
workload: []
)";

// Parses, but refers to things that do not exist (two problems).
constexpr const char* kDangling = R"(name: t
duration: 10m
topology:
  nodes: {a: {}, b: {}}
  links:
    - {endpoints: [a, b]}
workload:
  - {name: w, on: peerz, run: "true"}
events:
  - {at: 1s, link: a--c, down: true}
)";

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Store::Open(":memory:");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    service_ = std::make_unique<StoreService>(*store_);
    HttpApiOptions o;
    o.port = 0;
    o.idle_timeout = std::chrono::seconds(5);
    auto server = HttpApiServer::Start(*service_, o);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    ASSERT_NE(server_->port(), 0);
  }

  Reply Do(const std::string& method, const std::string& target,
           const std::vector<std::pair<std::string, std::string>>& headers = {},
           const std::string& body = "") {
    Client c(server_->port());
    EXPECT_TRUE(c.connected());
    return c.Send(method, target, headers, body);
  }

  std::string Submit(const std::string& yaml = kGood) {
    Reply r = Do("POST", "/api/v1/experiments", kYaml, yaml);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.j.is_object() && r.j.contains("id") ? r.j["id"].get<std::string>() : "";
  }

  std::unique_ptr<Store> store_;
  std::unique_ptr<StoreService> service_;
  std::unique_ptr<HttpApiServer> server_;
};

TEST_F(HttpApiTest, ListensOnLoopbackEphemeralPort) {
  EXPECT_EQ(server_->address(), "127.0.0.1");
  EXPECT_EQ(server_->url(), "http://127.0.0.1:" + std::to_string(server_->port()));
  Reply r = Do("GET", "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "application/json");
  EXPECT_EQ(r.j, json({{"status", "ok"}}));
  EXPECT_EQ(Do("GET", "/api/v1/healthz").status, 200);
}

TEST_F(HttpApiTest, SubmitGoodYamlThenListAndGet) {
  Reply r = Do("POST", "/api/v1/experiments",
               {{"Content-Type", "application/yaml"}, {"X-Gridemu-Filename", "ping.yaml"}}, kGood);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.j["state"], "submitted");
  const std::string id = r.j["id"];
  EXPECT_EQ(id, "ping-1");
  EXPECT_EQ(r.headers["location"], "/api/v1/experiments/ping-1");

  Reply list = Do("GET", "/api/v1/experiments");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.j["slice"], "default");
  ASSERT_EQ(list.j["experiments"].size(), 1u);
  EXPECT_EQ(list.j["experiments"][0]["id"], id);
  EXPECT_EQ(list.j["experiments"][0]["state"], "submitted");
  EXPECT_EQ(list.j["experiments"][0]["vnodes"], 2);
  EXPECT_EQ(list.j["experiments"][0]["source"], "ping.yaml");

  Reply get = Do("GET", "/api/v1/experiments/" + id);
  ASSERT_EQ(get.status, 200) << get.body;
  EXPECT_EQ(get.j["state"], "submitted");
  EXPECT_EQ(get.j["links"], 1);
  EXPECT_EQ(get.j["duration"], "1m");
  EXPECT_EQ(get.j["yaml_sha256"], Sha256Hex(kGood));
  ASSERT_EQ(get.j["transitions"].size(), 1u);
  EXPECT_TRUE(get.j["transitions"][0]["from"].is_null());
  EXPECT_EQ(get.j["transitions"][0]["to"], "submitted");
  EXPECT_EQ(get.j["task_counts"], json({{"total", 1}, {"by_state", {{"pending", 1}}}}));
  EXPECT_TRUE(get.j["placement"].is_null());
}

TEST_F(HttpApiTest, MalformedYamlIs422WithPositionAndNothingStored) {
  Reply r = Do("POST", "/api/v1/experiments", kYaml, kMalformed);
  ASSERT_EQ(r.status, 422) << r.body;
  // The same diagnostics as the parser's, one per line.
  auto parsed = experiments::ParseExperiment(kMalformed, "experiment.yaml");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(r.j["error"], parsed.status().message());
  ASSERT_EQ(r.j["diagnostics"].size(), 1u);
  const json& d = r.j["diagnostics"][0];
  EXPECT_EQ(d["file"], "experiment.yaml");
  EXPECT_EQ(d["line"], 5);
  EXPECT_EQ(d["column"], 1);
  EXPECT_EQ(d["message"], "YAML syntax error: end of map flow not found");
  EXPECT_EQ(store_->ListExperiments()->size(), 0u);
}

TEST_F(HttpApiTest, InvalidExperimentIs422WithEveryDiagnostic) {
  Reply r = Do("POST", "/api/v1/experiments",
               {{"Content-Type", "text/yaml; charset=utf-8"}, {"X-Gridemu-Filename", "bad.yaml"}},
               kDangling);
  ASSERT_EQ(r.status, 422) << r.body;
  auto parsed = experiments::ParseExperiment(kDangling, "bad.yaml");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(r.j["error"], parsed.status().message());
  // Every line of the parser's message is one diagnostic, in order.
  std::vector<std::string> lines;
  std::string msg = parsed.status().message();
  for (size_t p = 0, e; p < msg.size(); p = e + 1) {
    e = msg.find('\n', p);
    if (e == std::string::npos) e = msg.size();
    lines.push_back(msg.substr(p, e - p));
  }
  ASSERT_GE(lines.size(), 2u);
  ASSERT_EQ(r.j["diagnostics"].size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    const json& d = r.j["diagnostics"][i];
    EXPECT_EQ(d["file"].get<std::string>() + ":" + std::to_string(d["line"].get<int>()) + ":" +
                  std::to_string(d["column"].get<int>()) + ": " + d["message"].get<std::string>(),
              lines[i]);
  }
  EXPECT_EQ(r.j["diagnostics"][0]["message"], "on: no vnode or group named 'peerz'");
  EXPECT_EQ(r.j["diagnostics"][0]["line"], 8);
  EXPECT_EQ(store_->ListExperiments()->size(), 0u);
}

TEST_F(HttpApiTest, WrongContentTypeIs415) {
  Reply r = Do("POST", "/api/v1/experiments", {{"Content-Type", "text/plain"}}, kGood);
  EXPECT_EQ(r.status, 415);
  EXPECT_NE(r.j["error"].get<std::string>().find("application/yaml"), std::string::npos);
  EXPECT_EQ(Do("POST", "/api/v1/experiments", {}, kGood).status, 415);
  EXPECT_EQ(Do("POST", "/api/v1/experiments",
               {{"Content-Type", "application/yaml; charset=latin1"}}, kGood)
                .status,
            415);
  EXPECT_EQ(
      Do("POST", "/api/v1/experiments", {{"Content-Type", "Application/X-YAML"}}, kGood).status,
      201);
  EXPECT_EQ(store_->ListExperiments()->size(), 1u);
}

TEST_F(HttpApiTest, OversizedBodyIs413AndTheServerStaysUp) {
  std::string big(4 * 1024 * 1024 + 1, '#');
  Reply r = Do("POST", "/api/v1/experiments", kYaml, big);
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_NE(r.j["error"].get<std::string>().find("4194304"), std::string::npos);
  EXPECT_EQ(r.headers["connection"], "close");

  // With "Expect: 100-continue" the answer comes before the body is sent.
  Client c(server_->port());
  ASSERT_TRUE(
      c.Write("POST /api/v1/experiments HTTP/1.1\r\nHost: x\r\nContent-Type: "
              "application/yaml\r\nExpect: 100-continue\r\nContent-Length: 9999999\r\n\r\n"));
  Reply early = c.Read();
  EXPECT_EQ(early.status, 413);

  // A body just under the limit is read (and is then just invalid YAML).
  std::string almost = "# " + std::string(4 * 1024 * 1024 - 10, 'x') + "\n";
  EXPECT_EQ(Do("POST", "/api/v1/experiments", kYaml, almost).status, 422);
  EXPECT_EQ(Do("GET", "/healthz").status, 200);
}

TEST_F(HttpApiTest, ExpectContinueIsHonoured) {
  Client c(server_->port());
  const std::string body = kGood;
  ASSERT_TRUE(
      c.Write("POST /api/v1/experiments HTTP/1.1\r\nHost: x\r\nContent-Type: "
              "application/yaml\r\nExpect: 100-continue\r\nContent-Length: " +
              std::to_string(body.size()) + "\r\n\r\n"));
  Reply cont = c.Read();
  EXPECT_EQ(cont.status, 100);
  ASSERT_TRUE(c.Write(body));
  Reply r = c.Read();
  EXPECT_EQ(r.status, 201) << r.body;
}

TEST_F(HttpApiTest, EmptyOrNonUtf8BodyIs400) {
  Reply empty = Do("POST", "/api/v1/experiments", kYaml, "");
  EXPECT_EQ(empty.status, 400);
  EXPECT_EQ(empty.j["error"], "empty request body; expected an experiment file (YAML)");
  Reply latin1 = Do("POST", "/api/v1/experiments", kYaml, "name: caf\xe9\nduration: 1m\n");
  EXPECT_EQ(latin1.status, 400);
  EXPECT_EQ(latin1.j["error"], "request body is not valid UTF-8 (first bad byte at offset 9)");
  EXPECT_EQ(store_->ListExperiments()->size(), 0u);
}

TEST_F(HttpApiTest, HostsListsRegisteredPnodesWithStateAndAddress) {
  Reply empty = Do("GET", "/api/v1/hosts");
  ASSERT_EQ(empty.status, 200) << empty.body;
  EXPECT_EQ(empty.j, json({{"hosts", json::array()}}));
  HostRecord a;
  a.host_id = "p0";
  a.address = "172.31.90.1";
  a.cores = 2;
  a.max_vnodes = 100;
  ASSERT_TRUE(store_->UpsertHost(a).ok());
  HostRecord b;
  b.host_id = "p1";
  ASSERT_TRUE(store_->UpsertHost(b).ok());
  ASSERT_TRUE(store_->SetHostState("p1", HostState::kDown).ok());
  Reply r = Do("GET", "/api/v1/hosts");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.j["hosts"].size(), 2u) << r.body;
  EXPECT_EQ(r.j["hosts"][0]["host_id"], "p0");
  EXPECT_EQ(r.j["hosts"][0]["address"], "172.31.90.1");
  EXPECT_EQ(r.j["hosts"][0]["state"], "up");
  EXPECT_EQ(r.j["hosts"][0]["max_vnodes"], 100);
  EXPECT_EQ(r.j["hosts"][1]["host_id"], "p1");
  EXPECT_TRUE(r.j["hosts"][1]["address"].is_null());
  EXPECT_EQ(r.j["hosts"][1]["state"], "down");
  EXPECT_EQ(Do("POST", "/api/v1/hosts", kYaml, "x").status, 405);
  EXPECT_EQ(Do("GET", "/api/v1/hosts?slice=nope").status, 404);
}

TEST_F(HttpApiTest, UnknownSliceIs404) {
  Reply r = Do("POST", "/api/v1/experiments",
               {{"Content-Type", "application/yaml"}, {"X-Gridemu-Slice", "x"}}, kGood);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.j, json({{"error", "unknown slice 'x'"}}));
  Reply q = Do("GET", "/api/v1/experiments?slice=nope");
  EXPECT_EQ(q.status, 404);
  EXPECT_EQ(q.j["error"], "unknown slice 'nope'");
  EXPECT_EQ(store_->ListExperiments()->size(), 0u);
}

TEST_F(HttpApiTest, SlicesSeeOnlyTheirOwnExperiments) {
  SliceRecord team;
  team.name = "team-a";
  ASSERT_TRUE(store_->CreateSlice(team, "tok").ok());
  const std::string id = Submit();
  const std::vector<std::pair<std::string, std::string>> as_team = {
      {"X-Gridemu-Slice", "team-a"}, {"Authorization", "Bearer tok"}};
  Reply list = Do("GET", "/api/v1/experiments", as_team);
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.j["experiments"].size(), 0u);
  Reply get = Do("GET", "/api/v1/experiments/" + id, as_team);
  EXPECT_EQ(get.status, 404);
  EXPECT_EQ(get.j["error"], "unknown experiment '" + id + "'");
  // Without or with a wrong token.
  Reply none = Do("GET", "/api/v1/experiments", {{"X-Gridemu-Slice", "team-a"}});
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer realm=\"gridemu\"");
  EXPECT_EQ(Do("GET", "/api/v1/experiments",
               {{"X-Gridemu-Slice", "team-a"}, {"Authorization", "Bearer nope"}})
                .status,
            403);
  // Submitting to the slice; a file naming another slice is refused.
  auto headers = as_team;
  headers.emplace_back("Content-Type", "application/yaml");
  Reply sub = Do("POST", "/api/v1/experiments", headers, kGood);
  ASSERT_EQ(sub.status, 201) << sub.body;
  EXPECT_EQ(store_->GetExperiment(sub.j["id"].get<std::string>())->slice, "team-a");
  Reply other = Do("POST", "/api/v1/experiments", headers, std::string(kGood) + "slice: team-b\n");
  EXPECT_EQ(other.status, 422);
  EXPECT_EQ(other.j["diagnostics"][0]["message"],
            "slice: the file is for slice 'team-b' but it was submitted to slice 'team-a'");
}

TEST_F(HttpApiTest, UnknownExperimentIs404) {
  Reply r = Do("GET", "/api/v1/experiments/nope-1");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.j["error"], "unknown experiment 'nope-1'");
  EXPECT_EQ(Do("POST", "/api/v1/experiments/nope-1/cancel").status, 404);
  EXPECT_EQ(Do("GET", "/api/v1/experiments/nope-1/results").status, 404);
  EXPECT_EQ(Do("GET", "/api/v1/experiments/nope-1/logs?task=a/0").status, 404);
}

TEST_F(HttpApiTest, CancelTwiceIs200Then409) {
  const std::string id = Submit();
  Reply first = Do("POST", "/api/v1/experiments/" + id + "/cancel");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.j, json({{"id", id}, {"state", "cancelled"}}));
  Reply second = Do("POST", "/api/v1/experiments/" + id + "/cancel");
  EXPECT_EQ(second.status, 409);
  EXPECT_EQ(second.j["error"], "experiment " + id + " is already cancelled");
  Reply get = Do("GET", "/api/v1/experiments/" + id);
  EXPECT_EQ(get.j["state"], "cancelled");
  EXPECT_EQ(get.j["transitions"].size(), 2u);

  // A running experiment goes through cancelling.
  const std::string run = Submit();
  for (auto s :
       {ExperimentState::kPlaced, ExperimentState::kDeploying, ExperimentState::kRunning}) {
    ASSERT_TRUE(store_->Transition(run, s, "test").ok());
  }
  Reply c = Do("POST", "/api/v1/experiments/" + run + "/cancel");
  ASSERT_EQ(c.status, 200) << c.body;
  auto ts = store_->ListTransitions(run);
  ASSERT_EQ(ts->size(), 6u);
  EXPECT_EQ((*ts)[4].to, ExperimentState::kCancelling);
  EXPECT_EQ((*ts)[5].to, ExperimentState::kCancelled);
}

TEST_F(HttpApiTest, UnknownRouteIs404WrongMethodIs405) {
  Reply r = Do("GET", "/api/v1/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.j["error"], "no route for GET /api/v1/nothing");
  EXPECT_EQ(Do("GET", "/").status, 404);
  EXPECT_EQ(Do("GET", "/api/v1/experiments/").status, 404);
  EXPECT_EQ(Do("GET", "/api/v1/experiments/x/y").status, 404);
  EXPECT_EQ(Do("GET", "/api/v2/experiments").status, 404);

  Reply m = Do("DELETE", "/api/v1/experiments");
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.headers["allow"], "GET, POST");
  EXPECT_EQ(m.headers["content-type"], "application/json");
  EXPECT_EQ(Do("GET", "/api/v1/experiments/x/cancel").status, 405);
  EXPECT_EQ(Do("POST", "/api/v1/experiments/x").status, 405);
  EXPECT_EQ(Do("PUT", "/healthz").status, 405);

  // HEAD gets the headers of the answer and no body; the connection stays usable.
  Client c(server_->port());
  ASSERT_TRUE(c.Write("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  Reply h = c.Read(/*head=*/true);
  EXPECT_EQ(h.status, 405);
  EXPECT_NE(h.headers["content-length"], "0");
  EXPECT_EQ(c.Send("GET", "/healthz").status, 200);
}

TEST_F(HttpApiTest, LogsAndResults) {
  const std::string id = Submit();
  fs::path dir = fs::temp_directory_path() / ("gridemu-http-test-" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    std::ofstream(dir / "ping.out") << "PING b\n3 packets transmitted, 3 received\n";
    std::ofstream(dir / "manifest.json") << R"({"seed": 1, "experiment": "ping"})";
  }
  TaskUpdate u;
  u.task_id = "ping/0";
  u.state = TaskState::kExited;
  u.exit_code = 0;
  u.stdout_path = (dir / "ping.out").string();
  ASSERT_TRUE(store_->UpdateTasks(id, {u}).ok());
  ASSERT_TRUE(store_->SetResultsDir(id, dir.string()).ok());
  ASSERT_TRUE(store_->PutResults(id, {{"metrics.csv", "metrics.csv"}}).ok());

  Reply logs = Do("GET", "/api/v1/experiments/" + id + "/logs?task=ping%2F0&stream=stdout&tail=9");
  ASSERT_EQ(logs.status, 200) << logs.body;
  EXPECT_EQ(logs.j["text"], "received\n");
  EXPECT_EQ(logs.j["truncated"], true);
  EXPECT_EQ(logs.j["size_bytes"], 41);
  Reply all = Do("GET", "/api/v1/experiments/" + id + "/logs?task=ping/0");
  EXPECT_EQ(all.j["text"], "PING b\n3 packets transmitted, 3 received\n");
  Reply err = Do("GET", "/api/v1/experiments/" + id + "/logs?task=ping/0&stream=stderr");
  EXPECT_EQ(err.status, 404);
  EXPECT_EQ(err.j["error"],
            "task ping/0 of experiment " + id + " has no stderr yet (state exited)");
  EXPECT_EQ(Do("GET", "/api/v1/experiments/" + id + "/logs").status, 400);
  EXPECT_EQ(Do("GET", "/api/v1/experiments/" + id + "/logs?task=ping/0&stream=both").status, 400);
  EXPECT_EQ(Do("GET", "/api/v1/experiments/" + id + "/logs?task=ping/0&tail=-1").status, 400);
  EXPECT_EQ(Do("GET", "/api/v1/experiments/" + id + "/logs?task=nope/0").status, 404);

  Reply res = Do("GET", "/api/v1/experiments/" + id + "/results");
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.j["results_dir"], dir.string());
  EXPECT_EQ(res.j["manifest"], json({{"seed", 1}, {"experiment", "ping"}}));
  EXPECT_EQ(res.j["entries"], json({{"metrics.csv", "metrics.csv"}}));
  fs::remove_all(dir);
}

TEST_F(HttpApiTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Client c(server_->port());
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 3; ++i) {
    Reply r = c.Send("GET", "/healthz");
    EXPECT_EQ(r.status, 200);
  }
  Reply sub = c.Send("POST", "/api/v1/experiments", kYaml, kGood);
  EXPECT_EQ(sub.status, 201);
  Reply bad = c.Send("POST", "/api/v1/experiments", kYaml, kMalformed);
  EXPECT_EQ(bad.status, 422);
  Reply list = c.Send("GET", "/api/v1/experiments");
  EXPECT_EQ(list.j["experiments"].size(), 1u);
}

TEST_F(HttpApiTest, GarbageRequestsDoNotCrashTheServer) {
  {
    Client c(server_->port());
    ASSERT_TRUE(c.Write("THIS IS NOT HTTP\r\n\r\n"));
    Reply r = c.Read();
    EXPECT_EQ(r.status, 400);
    EXPECT_TRUE(c.PeerClosed());
  }
  {
    Client c(server_->port());
    ASSERT_TRUE(c.Write("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') +
                        "\r\n\r\n"));
    EXPECT_EQ(c.Read().status, 431);
  }
  {
    Client c(server_->port());  // connects and leaves at once
  }
  {
    Client c(server_->port());
    ASSERT_TRUE(c.Write("POST /api/v1/experiments HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort"));
  }  // closes mid-body
  Reply bad_escape = Do("GET", "/api/v1/experiments?slice=%zz");
  EXPECT_EQ(bad_escape.status, 400);
  EXPECT_EQ(Do("GET", "/healthz").status, 200);
}

TEST(HttpApiServer, StopIsIdempotentAndBadAddressesFail) {
  auto store = Store::Open(":memory:");
  ASSERT_TRUE(store.ok());
  StoreService service(**store);
  HttpApiOptions o;
  o.address = "not-an-address";
  auto bad = HttpApiServer::Start(service, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);

  o.address = "127.0.0.1";
  o.port = 0;
  auto server = HttpApiServer::Start(service, o);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  // The same port again cannot be bound.
  o.port = (*server)->port();
  auto twice = HttpApiServer::Start(service, o);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(twice.status().message().find("cannot listen on 127.0.0.1:" + std::to_string(o.port)),
            std::string::npos)
      << twice.status().message();

  Client idle((*server)->port());  // an open keep-alive connection does not block Stop()
  ASSERT_TRUE(idle.connected());
  (*server)->Stop();
  (*server)->Stop();
  EXPECT_TRUE(idle.PeerClosed());
}

}  // namespace
}  // namespace gridemu::controller
