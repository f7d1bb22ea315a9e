#pragma once
/// The parent's side of the child processes: this program re-executes itself (self_dir,
/// run_child) and reads what each child printed into one config's results (run_config) or the
/// threading section's (run_threads).

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.hpp"

namespace unfold::bench
{

inline std::string self_dir()
{
    char buf[4096];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    std::string p(buf);
    return p.substr(0, p.rfind('/'));
}

/// Runs `program args…` and returns its standard output lines.
inline std::vector<std::string> run_child(const std::string& program,
                                          const std::vector<std::string>& args,
                                          const std::map<std::string, std::string>& env = {})
{
    int fd[2];
    if (pipe(fd) != 0)
        std::exit(3);
    const pid_t pid = fork();
    if (pid == 0)
    {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        for (const auto& [name, value] : env)
            setenv(name.c_str(), value.c_str(), 1);
        std::vector<char*> argv{const_cast<char*>(program.c_str())};
        for (const auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(program.c_str(), argv.data());
        std::perror("execv");
        _exit(127);
    }
    close(fd[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd[0], buf, sizeof buf)) > 0)
        out.append(buf, std::size_t(n));
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        std::fprintf(stderr, "child %s failed (status %d)\n", program.c_str(), status);
    std::vector<std::string> lines;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line))
        lines.push_back(line);
    return lines;
}

struct config_result
{
    std::map<std::string, double> time;                    // name -> seconds
    std::map<std::size_t, std::pair<double, double>> gemm; // gates -> flops, seconds
    double mem_unfold = 0, mem_unfold_base = 0, mem_torch = 0, mem_torch_base = 0;
};

inline config_result run_config(const config& c, int reps, bool have_torch)
{
    const std::string dir = self_dir();
    const std::string self = dir + "/" + (have_torch ? "unfold_bench_torch" : "unfold_bench");
    config_result r;
    for (const auto& line : run_child(self, {"--child-time", c.name, std::to_string(reps)}))
    {
        std::istringstream in(line);
        std::string tag;
        in >> tag;
        if (tag == "TIME")
        {
            std::string name;
            double s;
            in >> name >> s;
            r.time[name] = s;
        }
        else if (tag == "FLOPS")
        {
            std::size_t gates;
            double f;
            in >> gates >> f;
            r.gemm[gates].first = f;
        }
    }
    for (auto& [gates, fs] : r.gemm)
    {
        const std::string name = "gemm." + std::to_string(gates);
        fs.second = r.time.count(name) ? r.time.at(name) : 0;
    }
    auto memory = [&](const std::string& program, const std::string& impl, double& base,
                      double& peak) {
        for (const auto& line : run_child(program, {"--child-mem", c.name, impl}))
        {
            std::istringstream in(line);
            std::string tag;
            in >> tag;
            if (tag == "MEM")
                in >> base >> peak;
        }
    };
    memory(dir + "/unfold_bench", "unfold", r.mem_unfold_base, r.mem_unfold);
    if (have_torch)
        memory(self, "torch", r.mem_torch_base, r.mem_torch);
    return r;
}

struct threads_result
{
    std::map<std::string, double> time; // name -> seconds
    double others = 0;                  // share of a core other processes used meanwhile
};

inline threads_result run_threads(const config& c, int reps, bool have_torch)
{
    const std::string self =
        self_dir() + "/" + (have_torch ? "unfold_bench_torch" : "unfold_bench");
    threads_result r;
    const cpu_use a = cpu_now(RUSAGE_CHILDREN);
    for (const auto& line : run_child(self, {"--child-threads", c.name, std::to_string(reps)},
                                      {{"OPENBLAS_NUM_THREADS", "2"}, {"OMP_NUM_THREADS", "2"}}))
    {
        std::istringstream in(line);
        std::string tag, name;
        double t;
        in >> tag >> name >> t;
        if (tag == "TIME")
            r.time[name] = t;
    }
    const cpu_use b = cpu_now(RUSAGE_CHILDREN);
    r.others = others_busy(a, b);
    return r;
}

} // namespace unfold::bench
