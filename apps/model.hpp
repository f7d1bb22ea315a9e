#pragma once
/// The model `unfold` trains: a decoder (models/decoder.hpp) or an encoder–decoder with or without
/// attention (models/seq2seq.hpp) over a character vocabulary, with the cell chosen at run time.
/// model_config is what a checkpoint's metadata records, so that `unfold sample` and `unfold eval`
/// can rebuild the model before loading its parameters.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "apps/reber_task.hpp"
#include "apps/task.hpp"
#include <unfold/framework/checkpoint.hpp>
#include <unfold/models/batching.hpp>
#include <unfold/models/decoder.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/layer_norm_cells.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/rnn.hpp>
#include <unfold/models/seq2seq.hpp>
#include <unfold/models/text.hpp>
#include <unfold/models/vocabulary.hpp>

namespace unfold::app
{

/// The architecture and data of a model: enough to rebuild it.
struct model_config
{
    std::string task = "addition"; ///< addition, copy, reber, reverse or text
    std::size_t digits = 2;        ///< operand length of addition
    /// decoder (the prompt is the start of the decoder's input) or seq2seq (an encoder reads it)
    std::string architecture = "decoder";
    /// seq2seq: additive, multiplicative or none (the decoder sees the source only through s_0)
    std::string attention = "additive";
    std::string cell = "gru"; ///< rnn, gru, lstm, ln_gru or ln_lstm
    std::size_t layers = 1;
    std::size_t hidden = 256;
    std::size_t proj_size = 0; ///< lstm: h projected to this many features (0: no projection)
    std::size_t embed = 64;
    std::string gate = "sigmoid"; ///< sigmoid or hard_sigmoid (gru, lstm)
    std::string state = "tanh";   ///< tanh, relu or elu
    /// Dropout between stacked layers while training; not saved (a loaded model evaluates).
    double dropout = 0;
    /// Recurrent dropout on the state each layer reads, while training (Note [Recurrent
    /// dropout]); not saved either.
    double recurrent_dropout = 0;
    /// What BPTT keeps while training (Note [Memory policies]): all, every:K[,gemm], gemm or a
    /// budget; not saved (gradients are the same under every policy).
    std::string bptt_memory = "all";
    vocabulary vocab;

    /// The configuration as checkpoint metadata ("unfold.cell" → "gru", ...).
    checkpoint_metadata to_metadata() const
    {
        return {{"format", "pt"},
                {"unfold.task", task},
                {"unfold.digits", std::to_string(digits)},
                {"unfold.model", architecture},
                {"unfold.attention", attention},
                {"unfold.cell", cell},
                {"unfold.layers", std::to_string(layers)},
                {"unfold.hidden", std::to_string(hidden)},
                {"unfold.proj_size", std::to_string(proj_size)},
                {"unfold.embed", std::to_string(embed)},
                {"unfold.gate", gate},
                {"unfold.state", state},
                {"unfold.vocab", vocab.to_json()}};
    }
    /// The configuration a checkpoint's metadata describes; throws unfold::error naming the
    /// missing or malformed key.
    static model_config from_metadata(const checkpoint_metadata& m, const std::string& path)
    {
        auto read = [&](const std::string& key, auto& field) {
            UNFOLD_CHECK(m.count(key),
                         "checkpoint {}: no '{}' in its metadata (not written by unfold train)",
                         path, key);
            field = metadata_value<std::decay_t<decltype(field)>>(m, key, path);
        };
        model_config c;
        std::string vocab;
        read("unfold.task", c.task);
        read("unfold.digits", c.digits);
        if (m.count("unfold.model")) // absent from checkpoints older than the encoder–decoder
        {
            read("unfold.model", c.architecture);
            read("unfold.attention", c.attention);
        }
        read("unfold.cell", c.cell);
        read("unfold.layers", c.layers);
        read("unfold.hidden", c.hidden);
        if (m.count("unfold.proj_size")) // absent from checkpoints older than the option
            read("unfold.proj_size", c.proj_size);
        read("unfold.embed", c.embed);
        read("unfold.gate", c.gate);
        read("unfold.state", c.state);
        read("unfold.vocab", vocab);
        for (const std::size_t n : {c.digits, c.layers, c.hidden, c.embed, c.proj_size})
            UNFOLD_CHECK(n < 1'000'000,
                         "checkpoint {}: a model size of {} in its metadata is not plausible", path,
                         n);
        c.vocab = vocabulary::from_json(vocab);
        return c;
    }
};

/// The activation called `name`; throws unfold::error for an unknown one.
inline activation activation_named(const std::string& name)
{
    if (name == "sigmoid")
        return activations::sigmoid();
    if (name == "hard_sigmoid")
        return activations::hard_sigmoid();
    if (name == "tanh")
        return activations::tanh();
    if (name == "relu")
        return activations::relu();
    if (name == "elu")
        return activations::elu();
    unfold::fail(fmt::format("unknown activation '{}'", name));
}

/// What one decoding run gives back, with the state as plain tensors (every part of every layer,
/// layer by layer) so that truncated BPTT can carry it into the next chunk's tape.
struct model_run
{
    std::vector<var> logits;
    std::vector<std::vector<std::size_t>> fed;
    std::vector<tensor> final_state;
    var sequence_logits; ///< (T, B, V), or empty (decode_result::sequence_logits)
};

/// The mean cross-entropy of a run over every counted target of `batch`.
inline var run_loss(const model_run& r, const token_batch& batch)
{
    const var all = r.sequence_logits.defined() ? r.sequence_logits : stack(r.logits);
    return cross_entropy(all, batch.targets, token_batch::ignore_index);
}

/// A decoder or an encoder–decoder of any cell behind one interface.
class model
{
public:
    virtual ~model() = default;
    const model_config& config() const { return m_config; }
    param_store& store() { return m_store; }

    /// `examples` as the padded batch run() reads: the prompt at the start of the decoder's input
    /// (make_batch), or as the encoder's source (make_seq2seq_batch).
    virtual token_batch batch_of(const std::vector<example>& examples) const
    {
        return make_batch(m_config.vocab, examples);
    }
    /// Beam search for the answer to `prompt` (token indices, after <s>); best first. Only an
    /// encoder–decoder offers it.
    virtual std::vector<hypothesis> beam_search(const std::vector<std::size_t>& prompt,
                                                const beam_options& o) const
    {
        unfold::fail("beam search decodes an encoder–decoder's answer: train with --model seq2seq");
    }

    /// Decodes `batch` under `policy`, starting from `initial` (zeros when empty; else the
    /// final_state of an earlier run, recorded on `t` as constants: Note [Truncated BPTT]).
    virtual model_run run(tape& t, const token_batch& batch, feeding_policy& policy,
                          const std::vector<tensor>& initial = {},
                          std::size_t training_step = 0) const = 0;
    /// Free-running generation after `prompt`, which starts with <s> for a task (see
    /// decoder::generate; an encoder–decoder reads the rest of the prompt as its source).
    virtual std::vector<std::size_t> generate(const std::vector<std::size_t>& prompt,
                                              std::size_t length, token_choice how, generator* g,
                                              double temperature, std::size_t top_k = 0) const = 0;
    /// The held-out score of a text (unfold::score_text, Note [Held-out text]); in evaluation mode.
    virtual text_score score_text(const std::vector<std::size_t>& text) const = 0;
    /// Training mode: dropout between layers draws its masks from `g` (which must outlive the
    /// calls). Models start in evaluation mode.
    virtual void train(generator& g) = 0;
    /// Evaluation mode: no dropout.
    virtual void eval() = 0;

protected:
    explicit model(model_config c)
        : m_config(std::move(c))
    {}
    model_config m_config;
    param_store m_store;
};

namespace detail
{
template <class Cell>
class model_of final : public model
{
public:
    template <class MakeLayer>
    model_of(model_config c, generator& g, MakeLayer&& make_layer)
        : model(std::move(c))
        , m_decoder(make_decoder(m_store, m_config.vocab.size(), m_config.embed, m_config.hidden,
                                 m_config.layers, g, make_layer, real(m_config.dropout)))
    {
        m_decoder.set_recurrent_dropout(real(m_config.recurrent_dropout));
        m_decoder.set_bptt_memory(bptt_memory::parse(m_config.bptt_memory));
    }

    void train(generator& g) override { m_decoder.train(g); }
    void eval() override { m_decoder.eval(); }

    model_run run(tape& t, const token_batch& batch, feeding_policy& policy,
                  const std::vector<tensor>& initial, std::size_t training_step) const override
    {
        // The carried state as a checkpoint stores it: every part of every layer, in order.
        constexpr std::size_t parts = state_traits<typename Cell::state>::size;
        typename decoder<Cell>::carried_state carried;
        if (!initial.empty())
        {
            UNFOLD_CHECK(initial.size() == parts * m_config.layers,
                         "model: a carried state of {} tensors for {} layers of {} parts",
                         initial.size(), m_config.layers, parts);
            carried.resize(m_config.layers);
            for (std::size_t k = 0; k < initial.size(); ++k)
                carried[k / parts].values[k % parts] = initial[k];
        }
        auto r = m_decoder.run(t, batch, policy, decoder<Cell>::resume(t, carried), training_step);
        model_run out{std::move(r.logits), std::move(r.fed), {}, r.sequence_logits};
        for (const auto& layer_state : decoder<Cell>::carry(r.final_state))
            for (const tensor& v : layer_state.values)
                out.final_state.push_back(v);
        return out;
    }

    text_score score_text(const std::vector<std::size_t>& text) const override
    {
        return unfold::score_text(m_decoder, text);
    }

    std::vector<std::size_t> generate(const std::vector<std::size_t>& prompt, std::size_t length,
                                      token_choice how, generator* g, double temperature,
                                      std::size_t top_k) const override
    {
        return m_decoder.generate(prompt, length, vocabulary::eos, how, g, temperature, top_k);
    }

private:
    decoder<Cell> m_decoder;
};

/// An encoder–decoder: the prompt is the source, the answer the target (make_seq2seq_batch).
template <class Cell>
class seq2seq_model_of final : public model
{
public:
    template <class MakeLayer>
    seq2seq_model_of(model_config c, generator& g, MakeLayer&& make_layer)
        : model(std::move(c))
        , m_seq2seq(make_seq2seq(m_store, options(m_config), g, make_layer))
    {
        m_seq2seq.set_bptt_memory(bptt_memory::parse(m_config.bptt_memory));
    }

    void train(generator& g) override { m_seq2seq.train(g); }
    void eval() override { m_seq2seq.eval(); }

    token_batch batch_of(const std::vector<example>& examples) const override
    {
        return make_seq2seq_batch(m_config.vocab, examples);
    }

    model_run run(tape& t, const token_batch& batch, feeding_policy& policy,
                  const std::vector<tensor>& initial, std::size_t training_step) const override
    {
        UNFOLD_CHECK(initial.empty(), "an encoder–decoder starts every answer from its source, so "
                                      "it carries no state from one batch into the next");
        auto r = m_seq2seq.run(t, batch, policy, training_step);
        return {std::move(r.logits), std::move(r.fed), {}, {}};
    }

    text_score score_text(const std::vector<std::size_t>&) const override
    {
        unfold::fail("an encoder–decoder answers prompts; a text model is a decoder (--model "
                     "decoder)");
    }

    std::vector<std::size_t> generate(const std::vector<std::size_t>& prompt, std::size_t length,
                                      token_choice how, generator* g, double temperature,
                                      std::size_t top_k) const override
    {
        return m_seq2seq.generate(source_of(prompt), vocabulary::bos, vocabulary::eos, length, how,
                                  g, temperature, top_k);
    }

    std::vector<hypothesis> beam_search(const std::vector<std::size_t>& prompt,
                                        const beam_options& o) const override
    {
        return m_seq2seq.beam_search(source_of(prompt), vocabulary::bos, vocabulary::eos, o);
    }

private:
    static seq2seq_options options(const model_config& c)
    {
        seq2seq_options o;
        o.source_vocab = o.target_vocab = c.vocab.size();
        o.embed = c.embed;
        o.hidden = c.hidden;
        o.layers = c.layers;
        o.dropout = real(c.dropout);
        if (c.attention == "additive")
            o.attend = attention_kind::additive;
        else if (c.attention == "multiplicative")
            o.attend = attention_kind::multiplicative;
        else
            o.attend.reset();
        return o;
    }
    /// The source make_seq2seq_batch makes of a prompt: its tokens after <s>, then </s>.
    static std::vector<std::size_t> source_of(const std::vector<std::size_t>& prompt)
    {
        std::vector<std::size_t> source(
            prompt.begin() + (!prompt.empty() && prompt.front() == vocabulary::bos), prompt.end());
        source.push_back(vocabulary::eos);
        return source;
    }

    seq2seq<Cell> m_seq2seq;
};

/// The model of `c` over cells made by make_layer(store, input_size, layer_options).
template <class Cell, class MakeLayer>
std::unique_ptr<model> model_of_cell(const model_config& c, generator& g, MakeLayer&& make_layer)
{
    if (c.architecture == "seq2seq")
        return std::make_unique<seq2seq_model_of<Cell>>(c, g, make_layer);
    return std::make_unique<model_of<Cell>>(c, g, make_layer);
}
} // namespace detail

/// Throws unfold::error naming the option when `c` describes no model make_model can build: a
/// zero size, dropout that cannot act, an architecture or attention not known, an option the
/// architecture or cell does not have. (The vocabulary is checked by make_model.)
inline void check_model_config(const model_config& c)
{
    UNFOLD_CHECK(c.layers >= 1 && c.hidden >= 1 && c.embed >= 1,
                 "layers, hidden and embed must be positive (got {}, {}, {})", c.layers, c.hidden,
                 c.embed);
    UNFOLD_CHECK(c.dropout >= 0 && c.dropout < 1, "--dropout {} is not a probability in [0, 1)",
                 c.dropout);
    UNFOLD_CHECK(c.dropout == 0 || c.layers > 1,
                 "--dropout {} acts between stacked layers, and --layers 1 has none: use --layers "
                 "2 or more",
                 c.dropout);
    UNFOLD_CHECK(c.proj_size == 0 || c.cell == "lstm",
                 "--proj-size projects an LSTM's output; --cell {} has no projection", c.cell);
    UNFOLD_CHECK(c.architecture == "decoder" || c.architecture == "seq2seq",
                 "unknown --model '{}' (expected decoder or seq2seq)", c.architecture);
    UNFOLD_CHECK(
        c.attention == "additive" || c.attention == "multiplicative" || c.attention == "none",
        "unknown --attention '{}' (expected additive, multiplicative or none)", c.attention);
    UNFOLD_CHECK(c.architecture == "decoder" || c.recurrent_dropout == 0,
                 "--recurrent-dropout acts in a decoder alone; --model seq2seq has none");
    UNFOLD_CHECK(c.architecture == "decoder" || c.task != "text",
                 "a text model is a decoder: --model seq2seq needs a task of prompts and answers");
    UNFOLD_CHECK(c.proj_size < c.hidden,
                 "--proj-size {} must be smaller than --hidden {} (as in PyTorch's nn.LSTM)",
                 c.proj_size, c.hidden);
}

/// A new model with parameters drawn from `g` (PyTorch's default initialisations). Throws
/// unfold::error for an unknown cell or activation, or a configuration check_model_config refuses.
inline std::unique_ptr<model> make_model(const model_config& c, generator& g)
{
    check_model_config(c);
    UNFOLD_CHECK(c.vocab.size() > 3, "the vocabulary is empty");
    const std::size_t hidden = c.hidden;
    if (c.cell == "rnn")
    {
        rnn_options o;
        o.state = activation_named(c.state);
        return detail::model_of_cell<rnn_cell>(
            c, g, [&](param_store& s, std::size_t in, layer_options lo) {
                return rnn_layer(s, in, hidden, g, lo, o);
            });
    }
    if (c.cell == "gru")
    {
        gru_options o;
        o.gate = activation_named(c.gate);
        o.state = activation_named(c.state);
        return detail::model_of_cell<gru_cell>(
            c, g, [&](param_store& s, std::size_t in, layer_options lo) {
                return gru_layer(s, in, hidden, g, lo, o);
            });
    }
    if (c.cell == "lstm")
    {
        lstm_options o;
        o.gate = activation_named(c.gate);
        o.state = activation_named(c.state);
        o.proj_size = c.proj_size;
        return detail::model_of_cell<lstm_cell>(
            c, g, [&](param_store& s, std::size_t in, layer_options lo) {
                return lstm_layer(s, in, hidden, g, lo, o);
            });
    }
    if (c.cell == "ln_gru")
    {
        gru_options o;
        o.gate = activation_named(c.gate);
        o.state = activation_named(c.state);
        return detail::model_of_cell<layer_norm_gru_cell>(
            c, g, [&](param_store& s, std::size_t in, layer_options lo) {
                return layer_norm_gru_layer(s, in, hidden, g, lo, o);
            });
    }
    if (c.cell == "ln_lstm")
    {
        lstm_options o;
        o.gate = activation_named(c.gate);
        o.state = activation_named(c.state);
        return detail::model_of_cell<layer_norm_lstm_cell>(
            c, g, [&](param_store& s, std::size_t in, layer_options lo) {
                return layer_norm_lstm_layer(s, in, hidden, g, lo, o);
            });
    }
    unfold::fail(
        fmt::format("unknown cell '{}' (expected rnn, gru, lstm, ln_gru or ln_lstm)", c.cell));
}

/// How well a model answers a task's held-out examples, by free-running greedy generation.
struct answer_report
{
    std::size_t correct = 0;
    std::size_t total = 0;
    std::vector<std::pair<example, std::string>> samples; ///< (example, what the model wrote)
    double accuracy() const { return total ? double(correct) / double(total) : 0; }
};

/// Runs every example of `examples` in batches under free-running greedy decoding and checks the
/// written answer with task::correct (exact match for addition and copy). Keeps the first
/// `keep` (example, answer) pairs.
inline answer_report evaluate_answers(const model& m, const task& tk,
                                      const std::vector<example>& examples,
                                      std::size_t batch_size = 250, std::size_t keep = 0)
{
    no_grad_guard no_grad;
    answer_report rep;
    free_running greedy;
    for (std::size_t first = 0; first < examples.size(); first += batch_size)
    {
        const std::vector<example> part(
            examples.begin() + std::ptrdiff_t(first),
            examples.begin() + std::ptrdiff_t(std::min(examples.size(), first + batch_size)));
        // The decoder writes one token per counted target, so an answer longer than the true one
        // is cut at the true length + 1 (its </s> position): an exact match is still exact.
        const token_batch b = m.batch_of(part);
        tape t;
        const model_run r = m.run(t, b, greedy);
        for (std::size_t s = 0; s < b.batch; ++s)
        {
            std::vector<std::size_t> written;
            for (std::size_t k = 0; k < b.steps; ++k)
                if (b.target(k, s) != token_batch::ignore_index)
                    written.push_back(choose_tokens(r.logits[k].value(), token_choice::greedy)[s]);
            std::string text = tk.vocab().decode(written);
            const bool ended =
                std::find(written.begin(), written.end(), vocabulary::eos) != written.end();
            const bool ok = ended && tk.correct(part[s], text);
            rep.correct += ok;
            ++rep.total;
            if (rep.samples.size() < keep)
                rep.samples.emplace_back(part[s], ended ? text : text + "…");
        }
    }
    return rep;
}

/// The fraction of `examples` that beam search of width `beam` answers exactly (task::correct on
/// the best hypothesis that ended); an encoder–decoder's answers only.
inline double evaluate_beam_answers(const model& m, const task& tk,
                                    const std::vector<example>& examples, std::size_t beam)
{
    beam_options o;
    o.width = beam;
    std::size_t correct = 0;
    for (const example& e : examples)
    {
        std::vector<std::size_t> prompt = tk.vocab().encode(e.prompt);
        prompt.insert(prompt.begin(), vocabulary::bos);
        o.max_length = tk.vocab().encode(e.answer).size() + 1; // as greedy is cut (above)
        const std::vector<hypothesis> found = m.beam_search(prompt, o);
        if (!found.empty() && found[0].ended) // decode() stops at </s>
            correct += tk.correct(e, tk.vocab().decode(found[0].tokens));
    }
    return examples.empty() ? 0 : double(correct) / double(examples.size());
}

/// The fraction of held-out positions whose greedy next-symbol prediction (under teacher forcing)
/// is a legal successor in the embedded Reber grammar (the end counts as the successor of a
/// complete string).
inline double reber_legal_accuracy(const model& m, const task& tk,
                                   const std::vector<example>& examples)
{
    no_grad_guard no_grad;
    teacher_forcing teacher;
    const token_batch b = m.batch_of(examples);
    tape t;
    const model_run r = m.run(t, b, teacher);
    std::size_t legal = 0, total = 0;
    for (std::size_t s = 0; s < b.batch; ++s)
    {
        reber_grammar::position p;
        for (std::size_t k = 0; k < b.steps; ++k)
        {
            if (b.target(k, s) == token_batch::ignore_index)
                break;
            const std::size_t guess = choose_tokens(r.logits[k].value(), token_choice::greedy)[s];
            const std::string allowed = reber_grammar::successors(p);
            legal += allowed.empty()
                         ? guess == vocabulary::eos
                         : guess > vocabulary::eos &&
                               allowed.find(tk.vocab().symbol(guess)) != std::string::npos;
            ++total;
            const std::string next = tk.vocab().symbol(std::size_t(b.target(k, s)));
            if (next.size() == 1)
                if (const auto q = reber_grammar::advance(p, next[0]))
                    p = *q;
        }
    }
    return total ? double(legal) / double(total) : 0;
}

/// The fraction of `count` strings sampled from the model (temperature 1, from <s>) that the
/// embedded Reber grammar accepts.
inline double reber_valid_samples(const model& m, const task& tk, std::size_t count, generator& g)
{
    std::size_t valid = 0;
    for (std::size_t i = 0; i < count; ++i)
    {
        const auto out = m.generate({vocabulary::bos}, 64, token_choice::sample, &g, 1.0);
        const bool ended = !out.empty() && out.back() == vocabulary::eos;
        valid += ended && reber_grammar::accepts(tk.vocab().decode(out));
    }
    return count ? double(valid) / double(count) : 0;
}

} // namespace unfold::app
