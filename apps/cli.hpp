#pragma once
/// The `unfold` command line: `train` (the default with no arguments), `sample` and `eval`.
/// run_cli is the whole program as a library function returning the exit status, so the tests
/// can drive it: 0 on success, 2 with a one-line message on a bad argument or an unreadable file,
/// 130 after Ctrl-C (the checkpoint is saved first), 1 on any other failure.

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "apps/model.hpp"
#include "apps/plot.hpp"
#include "apps/tasks.hpp"
#include "apps/train.hpp"
#include <unfold/framework/threads.hpp>
#include <unfold/models/text.hpp>

namespace unfold::app
{

namespace detail
{
/// `message` on one line: newlines become spaces, trailing blanks dropped.
inline std::string one_line(std::string message)
{
    for (char& c : message)
        if (c == '\n' || c == '\r')
            c = ' ';
    while (!message.empty() && message.back() == ' ')
        message.pop_back();
    return message;
}

/// Reads a checkpoint interval: "100" is 100 steps, "30s", "10m" and "2h" a time. An empty text is
/// no interval. False when `text` is neither.
inline bool parse_interval(const std::string& text, std::size_t& steps, double& seconds)
{
    steps = 0;
    seconds = 0;
    if (text.empty())
        return true;
    const char unit = text.back();
    const double scale = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 0;
    const std::string number = scale > 0 ? text.substr(0, text.size() - 1) : text;
    if (number.empty() || number.find_first_not_of("0123456789") != std::string::npos ||
        number.size() > 9)
        return false;
    const std::size_t n = std::stoul(number);
    if (n == 0)
        return false;
    if (scale > 0)
        seconds = double(n) * scale;
    else
        steps = n;
    return true;
}

/// For `unfold train --resume CKPT`: every run option not given on the command line takes the
/// value the checkpoint's run was started with (train() then refuses any that differ).
inline void take_run_options_not_given(const CLI::App& train_cmd, train_options& o)
{
    checkpoint_metadata ours = run_options_metadata(o);
    const checkpoint_metadata theirs = run_options_metadata(read_run_options(o.resume));
    for (auto& [key, value] : ours)
    {
        const std::string name = key.substr(4); // after "run."
        const bool given = name == "task"
                               ? train_cmd.count("--task") + train_cmd.count("--text") > 0
                               : train_cmd.count("--" + name) > 0;
        if (!given)
            value = theirs.at(key);
    }
    o = run_options_from_metadata(ours, o.resume, o);
}

/// Prints what the model writes for a few held-out examples of its task (or a text sample).
inline void print_samples(std::FILE* out, const model& m, const task* tk, const text_corpus* text,
                          std::size_t count, generator& g)
{
    if (count == 0)
        return;
    if (tk && tk->name() == "reber")
    {
        std::fprintf(out, "samples (strings the model generates; ✓ = accepted by the grammar):\n");
        for (std::size_t i = 0; i < count; ++i)
        {
            const auto ids = m.generate({vocabulary::bos}, 64, token_choice::sample, &g, 1.0);
            const std::string s = tk->vocab().decode(ids);
            std::fprintf(out, "  %-28s %s\n", s.c_str(),
                         reber_grammar::accepts(s) && ids.back() == vocabulary::eos ? "✓" : "✗");
        }
        return;
    }
    if (tk)
    {
        const auto rep = evaluate_answers(m, *tk, tk->held_out(), 250, count);
        std::fprintf(out, "samples (held-out prompts, greedy answers; ✓ = exact match):\n");
        for (const auto& [e, written] : rep.samples)
            std::fprintf(out, "  %s%-10s %s   (expected %s)\n", e.prompt.c_str(), written.c_str(),
                         tk->correct(e, written) ? "✓" : "✗", e.answer.c_str());
        return;
    }
    // A text model reads plain text, never <s> (text streams have none).
    std::vector<std::size_t> prompt;
    for (std::size_t i = 0; i < std::min<std::size_t>(20, text->valid.size()); ++i)
        prompt.push_back(text->valid[i]);
    const auto ids = m.generate(prompt, 300, token_choice::sample, &g, 0.8);
    std::fprintf(out, "sample (temperature 0.8) after a validation prompt:\n%s|%s\n",
                 text->vocab.decode(prompt).c_str(), text->vocab.decode(ids).c_str());
}
} // namespace detail

/// The `unfold` program: parses `args` (without the program name) and runs the command. Under
/// a `group` of processes (mpirun), `unfold train` is data-parallel (Note [Data parallelism]),
/// only rank 0 writes to `out`, and an error is reported with the rank that raised it.
inline int run_cli(const std::vector<std::string>& args, std::FILE* out = stdout,
                   std::FILE* err = stderr, process_group* group = nullptr)
{
    const std::string who = group && group->size() > 1 ? fmt::format("unfold (rank {} of {})",
                                                                     group->rank(), group->size())
                                                       : "unfold";
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> nowhere(nullptr, std::fclose);
    if (group && group->rank() != 0)
    {
        nowhere.reset(std::fopen("/dev/null", "w"));
        if (nowhere)
            out = nowhere.get();
    }
    CLI::App app{"unfold: train recurrent networks on built-in tasks or a text file, and sample "
                 "from them. With no arguments: unfold train (the addition task)."};
    app.name("unfold");
    app.require_subcommand(0, 1);
    app.option_defaults()->always_capture_default(); // --help shows every default

    train_options o;
    std::string task_name = "addition";
    CLI::App* train_cmd = app.add_subcommand("train", "train a model (the default command)");
    auto* task_opt = train_cmd->add_option("--task", task_name, "built-in task")
                         ->check(CLI::IsMember({"addition", "copy", "reber", "reverse"}));
    train_cmd->add_option("--text", o.text_file, "character-level LM on a UTF-8 text file")
        ->excludes(task_opt);
    train_cmd->add_option("--digits", o.model.digits, "addition: operand length")
        ->check(CLI::Range(1, 9));
    auto* model_opt =
        train_cmd
            ->add_option("--model", o.model.architecture,
                         "decoder (reads the prompt, then writes the answer) or seq2seq (a "
                         "bidirectional encoder reads the prompt; the default for --task reverse)")
            ->check(CLI::IsMember({"decoder", "seq2seq"}));
    train_cmd
        ->add_option("--attention", o.model.attention,
                     "seq2seq: the decoder's attention over the encoder's outputs (none: it "
                     "knows the prompt only through its initial state)")
        ->check(CLI::IsMember({"additive", "multiplicative", "none"}));
    train_cmd
        ->add_option("--cell", o.model.cell,
                     "recurrent cell (ln_: layer-normalised, models/layer_norm_cells.hpp)")
        ->check(CLI::IsMember({"rnn", "gru", "lstm", "ln_gru", "ln_lstm"}));
    train_cmd->add_option("--layers", o.model.layers, "stacked layers")->check(CLI::Range(1, 16));
    train_cmd->add_option("--hidden", o.model.hidden, "hidden size")->check(CLI::Range(1, 4096));
    train_cmd
        ->add_option("--proj-size", o.model.proj_size,
                     "lstm: project h to this many features, fewer than --hidden (PyTorch's "
                     "proj_size; 0: none)")
        ->check(CLI::Range(0, 4095));
    const CLI::Validator probability(
        [](std::string& s) {
            std::size_t used = 0;
            double p = -1;
            try
            {
                p = std::stod(s, &used);
            }
            catch (const std::exception&)
            {}
            return used == s.size() && p >= 0 && p < 1 ? std::string()
                                                       : "must be a probability in [0, 1)";
        },
        "[0, 1)");
    train_cmd
        ->add_option("--dropout", o.model.dropout,
                     "dropout between stacked layers while training (needs --layers 2 or more)")
        ->check(probability);
    train_cmd
        ->add_option("--recurrent-dropout", o.model.recurrent_dropout,
                     "dropout on the state each layer reads while training, one mask per "
                     "sequence for all its steps")
        ->check(probability);
    train_cmd
        ->add_option("--bptt-memory", o.model.bptt_memory,
                     "what backpropagation through time keeps: all (default), every:K (the "
                     "state every K steps, the rest recomputed), every:K,gemm (also every "
                     "step's matrix products: only elementwise work is recomputed), gemm "
                     "(matrix products and states) or a budget such as 256M; gradients are the "
                     "same under each")
        ->check(
            [](const std::string& s) {
                try
                {
                    (void)bptt_memory::parse(s);
                    return std::string();
                }
                catch (const error& e)
                {
                    return std::string(e.what());
                }
            },
            "all|every:K[,gemm]|gemm|BYTES");
    train_cmd->add_option("--embed", o.model.embed, "embedding size")->check(CLI::Range(1, 4096));
    int threads = 1;
    train_cmd
        ->add_option("--threads", threads,
                     "most BLAS threads a GEMM may use; only GEMMs large enough to gain get more "
                     "than one (Note [BLAS threads])")
        ->check(CLI::Range(1, 1024));
    train_cmd->add_option("--gate", o.model.gate, "gate activation (gru, lstm)")
        ->check(CLI::IsMember({"sigmoid", "hard_sigmoid"}));
    train_cmd->add_option("--state", o.model.state, "state activation")
        ->check(CLI::IsMember({"tanh", "relu", "elu"}));
    train_cmd->add_option("--feeding", o.feeding, "what the decoder is fed at step t")
        ->check(CLI::IsMember({"teacher", "free", "scheduled"}));
    train_cmd
        ->add_option("--decay", o.decay,
                     "scheduled sampling: decay of the teacher-forcing "
                     "probability")
        ->check(CLI::IsMember({"linear", "exponential", "inverse_sigmoid"}));
    train_cmd->add_option("--decay-k", o.decay_k, "decay parameter k (0: fitted to the run)")
        ->check(CLI::NonNegativeNumber);
    train_cmd->add_option("--decay-c", o.decay_c, "linear decay slope c (0: fitted to the run)")
        ->check(CLI::NonNegativeNumber);
    train_cmd->add_option("--decay-floor", o.decay_floor, "linear decay floor")
        ->check(CLI::Range(0.0, 1.0));
    train_cmd->add_option("--sampling-unit", o.sampling_unit, "coin per token or per sequence")
        ->check(CLI::IsMember({"token", "sequence"}));
    train_cmd->add_option("--optimizer", o.optimizer, "optimiser")
        ->check(CLI::IsMember({"sgd", "adam", "adamw", "rmsprop", "adagrad"}));
    train_cmd->add_option("--lr", o.lr, "learning rate (0: the optimiser's default)")
        ->check(CLI::NonNegativeNumber);
    train_cmd->add_option("--lr-schedule", o.lr_schedule, "learning-rate schedule")
        ->check(CLI::IsMember({"constant", "cosine"}));
    train_cmd->add_option("--clip", o.clip, "clip the global gradient norm (0: off)")
        ->check(CLI::NonNegativeNumber);
    train_cmd->add_option("--tbptt", o.tbptt, "truncated BPTT length (--text)")
        ->check(CLI::Range(1, 100000));
    train_cmd->add_option("--epochs", o.epochs, "epochs")->check(CLI::Range(1, 1000000));
    train_cmd
        ->add_option("--steps", o.steps,
                     "steps per epoch (0: 250 for a task, 50 for reverse, one pass over a --text)")
        ->check(CLI::Range(0, 100000000));
    train_cmd->add_option("--batch", o.batch, "sequences per step")->check(CLI::Range(1, 65536));
    train_cmd->add_option("--seed", o.seed, "random seed");
    train_cmd->add_option("--checkpoint", o.checkpoint,
                          "training checkpoint to write (default unfold-<task>.safetensors, or "
                          "the --resume file); never replaces another run's without --force");
    std::string checkpoint_every;
    const CLI::Validator interval(
        [](std::string& s) {
            std::size_t steps = 0;
            double seconds = 0;
            return detail::parse_interval(s, steps, seconds)
                       ? std::string()
                       : "must be a step count (100) or a time (30s, 10m, 2h)";
        },
        "N|Ns|Nm|Nh");
    train_cmd
        ->add_option("--checkpoint-every,--save-every", checkpoint_every,
                     "also save every N steps, or every so many seconds, minutes or hours "
                     "(30s, 10m, 2h); checkpoints are also saved after every epoch")
        ->check(interval);
    train_cmd->add_option("--resume", o.resume,
                          "continue the run of this training checkpoint exactly; options left "
                          "out are the run's");
    train_cmd->add_flag("--force", o.force, "replace an existing --checkpoint file");
    train_cmd->add_option(
        "--patience", o.patience,
        "stop after this many epochs without a better held-out metric (0: "
        "never); the best epoch's model is kept in <checkpoint>.best.safetensors");
    train_cmd->add_option("--log", o.log,
                          "write the metrics of every step and epoch to this file (JSON lines; "
                          "unfold plot draws it)");
    train_cmd->add_option("--samples", o.samples, "examples generated after training");
    train_cmd->add_flag("--quiet", o.quiet, "no progress output");

    std::string checkpoint, prompt;
    double temperature = 1;
    bool greedy = false;
    std::size_t length = 200;
    std::uint64_t seed = 1;
    CLI::App* sample_cmd = app.add_subcommand("sample", "generate from a checkpoint");
    sample_cmd->add_option("--checkpoint", checkpoint, "checkpoint file")->required();
    sample_cmd->add_option("--prompt", prompt, "text to continue (e.g. 37+85=)");
    sample_cmd->add_option("--temperature", temperature, "sampling temperature")
        ->check(CLI::PositiveNumber);
    sample_cmd->add_flag("--greedy", greedy, "take the most likely character at every step");
    std::size_t top_k = 0;
    sample_cmd->add_option("--top-k", top_k, "sample among the K most likely characters (0: all)");
    sample_cmd->add_option("--length", length, "characters to generate at most")
        ->check(CLI::Range(0, 1000000));
    sample_cmd->add_option("--seed", seed, "random seed");
    std::size_t beam = 0;
    double length_penalty = 1;
    sample_cmd
        ->add_option("--beam", beam,
                     "seq2seq: beam search of this width (at least 1), printing every hypothesis")
        ->check(CLI::Range(std::size_t(1), std::size_t(1000)));
    sample_cmd
        ->add_option("--length-penalty", length_penalty,
                     "beam search ranks by log p / length^this (0: by log p)")
        ->check(CLI::Range(0.0, 10.0));

    std::string plot_log, plot_image;
    CLI::App* plot_cmd =
        app.add_subcommand("plot", "draw the metrics log of a training run (unfold train --log)");
    plot_cmd->add_option("log", plot_log, "metrics log (JSON lines)")->required();
    plot_cmd->add_option("--output", plot_image, "image to write, .svg or .png (default LOG.svg)");

    std::string eval_task, eval_text;
    CLI::App* eval_cmd = app.add_subcommand("eval", "report a checkpoint's metrics on a task");
    eval_cmd->add_option("--checkpoint", checkpoint, "checkpoint file")->required();
    auto* eval_task_opt = eval_cmd->add_option("--task", eval_task, "task (default: its own)")
                              ->check(CLI::IsMember({"addition", "copy", "reber", "reverse"}));
    eval_cmd->add_option("--text", eval_text, "validate a text model on this file")
        ->excludes(eval_task_opt);
    std::size_t eval_beam = 0;
    eval_cmd
        ->add_option("--beam", eval_beam,
                     "seq2seq: also score the answers beam search of this width writes")
        ->check(CLI::Range(std::size_t(1), std::size_t(1000)));

    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try
    {
        app.parse(reversed);
    }
    catch (const CLI::CallForHelp&)
    {
        const CLI::App* shown = app.get_subcommands().empty() ? &app : app.get_subcommands()[0];
        std::fprintf(out, "%s", shown->help().c_str());
        return 0;
    }
    catch (const CLI::ExtrasError&)
    {
        // CLI11 parses the reversed list, so its own message lists the extras back to front.
        const CLI::App* where = app.get_subcommands().empty() ? &app : app.get_subcommands()[0];
        std::string extras;
        for (const std::string& a : where->remaining())
            extras += (extras.empty() ? "" : " ") + a;
        const std::string command = where == &app ? "unfold" : "unfold " + where->get_name();
        std::fprintf(err, "unfold: %s does not take %s (see %s --help)\n", command.c_str(),
                     extras.c_str(), command.c_str());
        return 2;
    }
    catch (const CLI::ParseError& e)
    {
        std::fprintf(err, "unfold: %s\n", detail::one_line(e.what()).c_str());
        return 2;
    }

    generator g(seed);
    try
    {
        if (plot_cmd->parsed())
        {
            const std::string image = plot_image.empty() ? plot_log + ".svg" : plot_image;
            plot_metrics_log(plot_log, image);
            std::fprintf(out, "%s\n", image.c_str());
            return 0;
        }
        if (sample_cmd->parsed())
        {
            const auto m = load_model(checkpoint);
            const vocabulary& v = m->config().vocab;
            // Task models start from <s>; a text model was trained on plain text streams.
            std::vector<std::size_t> ids;
            if (m->config().task == "text")
                ids = text_prompt(v, prompt, "--prompt");
            else
            {
                ids = v.encode(prompt, "--prompt");
                ids.insert(ids.begin(), vocabulary::bos);
            }
            if (beam > 0)
            {
                beam_options bo;
                bo.width = beam;
                bo.max_length = length;
                bo.length_penalty = length_penalty;
                const std::vector<hypothesis> found = m->beam_search(ids, bo);
                for (std::size_t i = 0; i < found.size(); ++i)
                    std::fprintf(out, "%s%s%s  log p %.4f  score %.4f\n", i == 0 ? "" : "  ",
                                 i == 0 ? prompt.c_str() : "", v.decode(found[i].tokens).c_str(),
                                 found[i].log_prob, found[i].score);
                return 0;
            }
            const auto written =
                m->generate(ids, length, greedy ? token_choice::greedy : token_choice::sample, &g,
                            temperature, top_k);
            std::fprintf(out, "%s%s\n", prompt.c_str(), v.decode(written).c_str());
            return 0;
        }
        if (eval_cmd->parsed())
        {
            const auto m = load_model(checkpoint);
            std::unique_ptr<task> tk;
            std::unique_ptr<text_corpus> text;
            if (!eval_text.empty() || (eval_task.empty() && m->config().task == "text"))
            {
                bool held_out_split = false;
                if (eval_text.empty())
                {
                    // The run's own held-out split, when the checkpoint names its text file.
                    const auto meta = read_checkpoint_metadata(checkpoint);
                    const auto trained_on = meta.find("run.text");
                    UNFOLD_CHECK(trained_on != meta.end() && !trained_on->second.empty(),
                                 "eval: {} is a text model that does not name its text; give "
                                 "--text FILE",
                                 checkpoint);
                    eval_text = trained_on->second;
                    held_out_split = true;
                }
                text = std::make_unique<text_corpus>();
                text->vocab = m->config().vocab;
                if (held_out_split)
                {
                    const text_corpus run_text = text_corpus::load(eval_text);
                    UNFOLD_CHECK(run_text.vocab.to_json() == text->vocab.to_json(),
                                 "eval: {} has changed since {} was trained on it (its characters "
                                 "differ); give --text FILE",
                                 eval_text, checkpoint);
                    text->valid = run_text.valid;
                    std::fprintf(out, "held-out split of %s: its last 10%%, %zu characters\n",
                                 eval_text.c_str(), text->valid.size());
                }
                else // encoded with the model's vocabulary: every character must be known to it
                    text->valid = text->vocab.encode(read_file(eval_text), eval_text);
                UNFOLD_CHECK(text->valid.size() >= 200, "{}: too short to evaluate on", eval_text);
            }
            else
            {
                tk =
                    make_task(eval_task.empty() ? m->config().task : eval_task, m->config().digits);
                UNFOLD_CHECK(tk->vocab().to_json() == m->config().vocab.to_json(),
                             "eval: {} was trained on '{}', whose vocabulary differs from {}'s",
                             checkpoint, m->config().task, tk->name());
            }
            const validation v = validate(*m, tk.get(), text.get(), g, eval_beam);
            std::fprintf(out, "%s\n", v.str().c_str());
            return 0;
        }
        set_num_threads(threads);
        if (!o.text_file.empty())
            o.model.task = "text";
        else
            o.model.task = task_name;
        if (task_name == "reverse" && o.resume.empty() && model_opt->count() == 0)
            o.model.architecture = "seq2seq"; // the task is a translation
        detail::parse_interval(checkpoint_every, o.checkpoint_every_steps,
                               o.checkpoint_every_seconds);
        if (!o.resume.empty())
            detail::take_run_options_not_given(*train_cmd, o);
        train_result r = train(o, out, group);
        if (r.interrupted)
            return 130;
        std::unique_ptr<task> tk;
        std::unique_ptr<text_corpus> text;
        if (o.model.task == "text")
            text = std::make_unique<text_corpus>(text_corpus::load(o.text_file));
        else
            tk = make_task(o.model.task, o.model.digits);
        if (!o.quiet && (!group || group->rank() == 0))
            detail::print_samples(out, *r.trained, tk.get(), text.get(), o.samples, g);
        return 0;
    }
    catch (const unfold::error& e)
    {
        std::fprintf(err, "%s: %s\n", who.c_str(), detail::one_line(e.what()).c_str());
        return 2;
    }
    catch (const std::exception& e)
    {
        std::fprintf(err, "%s: %s\n", who.c_str(), detail::one_line(e.what()).c_str());
        return 1;
    }
}

} // namespace unfold::app
