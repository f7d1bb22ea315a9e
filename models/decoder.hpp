#pragma once
/// A token decoder run one step at a time — embedding → stacked cells → linear head — and the
/// loop that asks a feeding policy (models/feeding.hpp) what to feed at every step. Any cell with
/// the cell contract works (Note [Cell contract]); the parameters keep PyTorch's names
/// ("embed.weight", "rnn.weight_ih_l0", ..., "head.weight").
///
///     e_t      = E[x_t]                         x_0 observed; x_t (t ≥ 1) chosen by the policy
///     s_t^(1)  = cell_1(e_t, s_{t−1}^(1))
///     s_t^(l)  = cell_l(h_t^(l−1), s_{t−1}^(l))
///     logits_t = h_t^(L) Wᵀ + b                 (B, V)
///
/// Note [Whole-sequence decoding]
/// Under a policy that feeds the observed tokens (teacher forcing: feeding_policy::feeds_observed)
/// every step's input is known before decoding, so run() records the same model layer by layer
/// instead of step by step: one gather embeds all T·B tokens, each layer is one unroll (its input
/// projection one GEMM over the sequence, Note [Input projection]), dropout between layers is one
/// mask over a layer's (T, B, H) outputs, and the head is one GEMM over T·B rows. When the first
/// cell projects its input and the vocabulary has fewer than T·B tokens, it projects the V rows
/// of the embedding table once and gathers the projected rows: project(E)[x] = project(E[x]). Large
/// GEMMs run closer to the machine's peak than T small ones, in forward and in the weights'
/// gradients. Only the order of recording differs, and with it the order in which dropout draws its
/// masks. The per-step logits are then views of decode_result::sequence_logits, which a loss should
/// read (sequence_loss does). When a recorder needs each step's products on their own (the gradient
/// probe, Note [Gradient probe]), run() goes step by step under every policy.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <unfold/framework/tape.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/models/embedding.hpp>
#include <unfold/models/feeding.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/linear.hpp>
#include <unfold/models/recurrent_dropout.hpp>
#include <unfold/models/unroll.hpp>
#include <unfold/ops/cross_entropy.hpp>
#include <unfold/ops/gather_rows.hpp>
#include <unfold/ops/select.hpp>
#include <unfold/ops/stack.hpp>

namespace unfold
{

/// The padded source sequences an encoder reads (models/seq2seq.hpp), time-major.
struct source_batch
{
    std::size_t steps = 0;            ///< S, the longest source
    std::size_t batch = 0;            ///< B
    std::vector<std::size_t> tokens;  ///< (S, B) row-major, padded
    std::vector<std::size_t> lengths; ///< B lengths in [1, S]

    /// True when there is no source (a batch for a decoder alone).
    bool empty() const { return tokens.empty(); }
};

/// A padded batch of token sequences, time-major. Under teacher forcing the decoder is fed
/// inputs(t, ·) at step t, and inputs(t, b) = targets(t − 1, b) wherever the latter is counted.
struct token_batch
{
    /// The target of a position that carries no loss (a prompt, padding).
    static constexpr std::int64_t ignore_index = -100;

    std::size_t steps = 0;             ///< T
    std::size_t batch = 0;             ///< B
    std::vector<std::size_t> inputs;   ///< (T, B) row-major: x_t, the observed token of step t
    std::vector<std::int64_t> targets; ///< (T, B) row-major: y_t, or ignore_index
    /// What an encoder–decoder reads before decoding (make_seq2seq_batch); empty for a decoder
    /// alone, which reads its prompt as inputs (make_batch).
    source_batch source;

    /// The input of sequence b at step t.
    std::size_t input(std::size_t t, std::size_t b) const { return inputs[t * batch + b]; }
    /// The target of sequence b at step t.
    std::int64_t target(std::size_t t, std::size_t b) const { return targets[t * batch + b]; }
    /// The B inputs of step t.
    std::vector<std::size_t> inputs_at(std::size_t t) const
    {
        return {inputs.begin() + std::ptrdiff_t(t * batch),
                inputs.begin() + std::ptrdiff_t((t + 1) * batch)};
    }
    /// The B targets of step t.
    std::vector<std::int64_t> targets_at(std::size_t t) const
    {
        return {targets.begin() + std::ptrdiff_t(t * batch),
                targets.begin() + std::ptrdiff_t((t + 1) * batch)};
    }
    /// The number of targets that carry loss (not ignore_index).
    std::size_t counted() const
    {
        return std::size_t(std::count_if(targets.begin(), targets.end(),
                                         [](std::int64_t y) { return y != ignore_index; }));
    }
    /// Sequences [first, first + count) of the batch, with its steps (and its source's), e.g. one
    /// rank's part of a data-parallel batch (Note [Data parallelism]).
    token_batch rows(std::size_t first, std::size_t count) const
    {
        UNFOLD_CHECK(first + count <= batch && count > 0,
                     "token_batch: sequences [{}, {}) of a batch of {}", first, first + count,
                     batch);
        token_batch part;
        part.steps = steps;
        part.batch = count;
        for (std::size_t t = 0; t < steps; ++t)
            for (std::size_t b = first; b < first + count; ++b)
            {
                part.inputs.push_back(input(t, b));
                part.targets.push_back(target(t, b));
            }
        if (!source.empty())
        {
            part.source.steps = source.steps;
            part.source.batch = count;
            for (std::size_t s = 0; s < source.steps; ++s)
                for (std::size_t b = first; b < first + count; ++b)
                    part.source.tokens.push_back(source.tokens[s * source.batch + b]);
            part.source.lengths.assign(source.lengths.begin() + std::ptrdiff_t(first),
                                       source.lengths.begin() + std::ptrdiff_t(first + count));
        }
        return part;
    }
};

/// What a decoding run records: one (B, V) logits var per step, the tokens actually fed at every
/// step (B each), and the final state (to carry into the next chunk of truncated BPTT).
template <class State>
struct decode_result
{
    std::vector<var> logits;                   ///< per step, (B, V)
    std::vector<std::vector<std::size_t>> fed; ///< per step, the B tokens fed
    State final_state;                         ///< the state after the last step
    /// (T, B, V): every step's logits as one var when the run made them at once (Note
    /// [Whole-sequence decoding]), of which `logits` are views; else empty.
    var sequence_logits;

    /// The (T, B, V) logits of every step: sequence_logits, or the steps stacked.
    var all_logits() const { return sequence_logits.defined() ? sequence_logits : stack(logits); }
};

/// The mean cross-entropy over every counted target of `batch`, from a run's logits.
template <class State>
var sequence_loss(const decode_result<State>& r, const token_batch& batch)
{
    return cross_entropy(r.all_logits(), batch.targets, token_batch::ignore_index);
}

/// The loss term of step t alone: the mean cross-entropy of its counted targets.
template <class State>
var step_loss(const decode_result<State>& r, const token_batch& batch, std::size_t t)
{
    return cross_entropy(r.logits.at(t), batch.targets_at(t), token_batch::ignore_index);
}

/// The step-by-step loop of decoding `batch` under `policy` (which begin() has started): step 0 is
/// fed inputs(0, ·); step k ≥ 1 is fed what `policy` chooses where targets(k − 1, b) is counted
/// (the model predicted there) and inputs(k, b) elsewhere. step(fed) records one step and returns
/// its logits (B, V) recorded on `t`; every step's logits and fed tokens are appended to `logits`
/// and `fed`. `memory` says what BPTT keeps of the steps (Note [Memory policies]).
template <class Step>
void feed_steps(tape& t, const token_batch& batch, feeding_policy& policy, std::vector<var>& logits,
                std::vector<std::vector<std::size_t>>& fed, Step&& step,
                const bptt_memory& memory = {})
{
    std::vector<bool> choosable(batch.batch);
    UNFOLD_CHECK(memory.how != bptt_memory::kind::budget,
                 "bptt memory {}: a budget is planned for a sequence the model reads whole "
                 "(teacher forcing, an encoder); decoding step by step takes every:K or gemm",
                 memory.str());
    segmenter segments(t, memory, batch.steps); // Note [Memory policies]
    for (std::size_t k = 0; k < batch.steps; ++k)
    {
        segments.begin_step(k);
        std::vector<std::size_t> tokens = batch.inputs_at(k);
        if (k > 0)
        {
            bool any = false;
            for (std::size_t b = 0; b < batch.batch; ++b)
                any |= choosable[b] = batch.target(k - 1, b) != token_batch::ignore_index;
            if (any)
            {
                const std::vector<std::size_t> chosen =
                    policy.choose({k, tokens, logits.back().value(), choosable});
                UNFOLD_CHECK(chosen.size() == batch.batch,
                             "feeding policy '{}' chose {} tokens for a batch of {}", policy.name(),
                             chosen.size(), batch.batch);
                for (std::size_t b = 0; b < batch.batch; ++b)
                    if (choosable[b])
                        tokens[b] = chosen[b];
            }
        }
        const step_scope at(k); // Note [Sites]
        logits.push_back(step(tokens));
        fed.push_back(std::move(tokens));
        segments.keep(logits.back()); // the loss reads every step's logits after the loop
        segments.end_step(k);
    }
    segments.finish({});
}

/// Embedding → layer<Cell> stepped one time step at a time → linear head.
template <class Cell>
class decoder
{
public:
    using cell_state = typename Cell::state; ///< one layer's state
    /// One cell state per stacked layer, bottom first.
    using state = std::vector<cell_state>;

    /// The parts: `cells` must be unidirectional with input size = the embedding's width, and
    /// the head must map its hidden size to the vocabulary.
    decoder(embedding embed, layer<Cell> cells, linear head)
        : m_embed(std::move(embed))
        , m_cells(std::move(cells))
        , m_head(std::move(head))
    {
        UNFOLD_CHECK(m_cells.directions() == 1, "decoder: the layer must be unidirectional");
        UNFOLD_CHECK(m_embed.weight.shape()[1] == m_cells.input_size(),
                     "decoder: embeddings of width {} for a layer reading {} features",
                     m_embed.weight.shape()[1], m_cells.input_size());
        UNFOLD_CHECK(m_head.weight.shape()[1] == m_cells.output_size() &&
                         m_head.weight.shape()[0] == vocab_size(),
                     "decoder: a head of shape {} for hidden size {} and vocabulary {}",
                     shape_str(m_head.weight.shape()), m_cells.output_size(), vocab_size());
    }

    /// V, the embedding's rows.
    std::size_t vocab_size() const { return m_embed.weight.shape()[0]; }
    /// H of every layer.
    std::size_t hidden_size() const { return m_cells.hidden_size(); }
    /// The stacked layers.
    std::size_t num_layers() const { return m_cells.num_layers(); }
    /// The stacked cells, stepped one at a time by step().
    const layer<Cell>& cells() const { return m_cells; }
    /// Training mode: the layer's dropout between stacked cells and the recurrent dropout draw
    /// their masks from `g` (which must outlive the calls), as in layer::train. Decoders start in
    /// evaluation mode.
    void train(generator& g)
    {
        m_cells.train(g);
        m_generator = &g;
    }
    /// Evaluation mode: no dropout.
    void eval()
    {
        m_cells.eval();
        m_generator = nullptr;
    }
    /// True between train() and eval().
    bool training() const { return m_generator != nullptr; }
    /// What BPTT keeps of the decoded steps in later runs (Note [Memory policies]).
    void set_bptt_memory(const bptt_memory& memory) { m_cells.set_bptt_memory(memory); }
    /// Recurrent dropout with probability p on the state every layer's cell reads, in training
    /// mode: one mask per sequence and layer for a whole run (Note [Recurrent dropout]).
    void set_recurrent_dropout(real p)
    {
        UNFOLD_CHECK(p >= 0 && p < 1, "decoder: recurrent dropout {} is not in [0, 1)", p);
        m_recurrent_dropout = p;
    }

    /// Zeros for every layer, batch B, recorded on `t` as constants.
    state zero_state(tape& t, std::size_t batch) const
    {
        return state(num_layers(), unfold::zero_state<cell_state>(t, batch, m_cells.state_sizes()));
    }

    /// A state off any tape: what truncated BPTT carries from one chunk's run into the next
    /// (Note [Truncated BPTT]); empty before the first chunk.
    using carried_state = std::vector<saved_state<cell_state>>;
    /// The values of every layer's state, e.g. a run's final_state, to carry into the next chunk.
    static carried_state carry(const state& s)
    {
        carried_state out;
        for (const cell_state& layer_state : s)
            out.push_back(save_state(layer_state));
        return out;
    }
    /// A carried state recorded on `t` as constants (the next chunk's backward stops there);
    /// empty when `c` is, which run() starts from zeros.
    static state resume(tape& t, const carried_state& c)
    {
        state out;
        for (const auto& layer_state : c)
            out.push_back(layer_state.on(t));
        return out;
    }

    /// One step: feeds `tokens` (B indices), advances `s` in place, returns the logits (B, V).
    var step(tape& t, const std::vector<std::size_t>& tokens, state& s) const
    {
        return step_through([this](std::size_t l) -> const Cell& { return m_cells.cell(l); }, t,
                            tokens, s);
    }

private:
    /// Throws unless `s` has a state of shape (batch, H) for every layer (each part its own
    /// features, layer::state_sizes()).
    void check_state(const state& s, std::size_t batch) const
    {
        UNFOLD_CHECK(s.size() == num_layers(), "decoder: a state of {} layers for {} layers",
                     s.size(), num_layers());
        const auto sizes = m_cells.state_sizes();
        for (std::size_t l = 0; l < s.size(); ++l)
        {
            const auto parts = state_traits<cell_state>::parts(s[l]);
            for (std::size_t k = 0; k < parts.size(); ++k)
                UNFOLD_CHECK(parts[k].shape() == shape_type({batch, sizes[k]}),
                             "decoder: {} tokens (batch {}) but the state of layer {} has shape "
                             "{}, not ({}, {}): the {} differ",
                             batch, batch, l, shape_str(parts[k].shape()), batch, sizes[k],
                             parts[k].shape()[0] != batch ? "batch sizes" : "features");
        }
    }

    /// True when layer 0 projects the embedding table and gathers its rows for `tokens` tokens,
    /// rather than projecting their gathered embeddings: the same values (a projection acts on
    /// each row alone), from a GEMM over V rows instead of T·B (Note [Whole-sequence decoding]).
    bool projects_table(std::size_t tokens) const
    {
        return has_projection<Cell>::value && vocab_size() < tokens;
    }

    /// The observed sequence of `batch` run layer by layer into `r` (Note [Whole-sequence
    /// decoding]); layer l's cell is cell_of(l).
    template <class CellOf>
    void run_observed(CellOf&& cell_of, tape& t, const token_batch& batch,
                      decode_result<state>& r) const
    {
        check_state(r.final_state, batch.batch);
        m_embed.check(batch.inputs);
        const shape_type grid{batch.steps, batch.batch};
        const bool project_table = projects_table(batch.inputs.size());
        unroll_options memory;
        memory.memory = m_cells.memory();
        var x = project_table ? var() : m_embed(t, batch.inputs, grid);
        for (std::size_t l = 0; l < num_layers(); ++l)
        {
            const layer_scope in(l, false); // Note [Sites]
            std::vector<cell_state> states;
            if constexpr (has_projection<Cell>::value)
                if (l == 0 && project_table) // the decoder draws no input mask: the plain cell
                    states =
                        unroll_projected(cell_of(0), t,
                                         gather_rows(m_cells.cell(0).project(t, t[m_embed.weight]),
                                                     batch.inputs, grid),
                                         r.final_state[0], memory);
            if (states.empty())
                states = unroll(cell_of(l), t, x, r.final_state[l], memory);
            r.final_state[l] = states.back();
            x = m_cells.between_layers(stack(outputs(states)), l);
        }
        r.sequence_logits = m_head(t, x);
        for (std::size_t k = 0; k < batch.steps; ++k)
        {
            r.logits.push_back(select(r.sequence_logits, std::ptrdiff_t(k)));
            r.fed.push_back(batch.inputs_at(k));
        }
    }

    /// step() with the cell of layer l given by cell_of(l) (the cells or their dropout wrappers).
    template <class CellOf>
    var step_through(CellOf&& cell_of, tape& t, const std::vector<std::size_t>& tokens,
                     state& s) const
    {
        UNFOLD_CHECK(!tokens.empty(), "decoder: a step needs at least one token");
        check_state(s, tokens.size());
        var x = m_embed(t, tokens);
        for (std::size_t l = 0; l < s.size(); ++l)
        {
            const layer_scope in(l, false); // Note [Sites]
            s[l] = unfold::step(cell_of(l), t, x, s[l]);
            x = m_cells.between_layers(hidden(s[l]), l);
        }
        return m_head(t, x);
    }

public:
    /// Decodes `batch` from `s0` (zeros when empty). Step 0 is fed inputs(0, ·); step t ≥ 1 is fed
    /// what `policy` chooses where targets(t − 1, b) is counted (the model predicted there) and
    /// inputs(t, b) elsewhere. The same model runs under every policy (Note [Fed tokens are
    /// data]); one that feeds the observed tokens runs it layer by layer (Note [Whole-sequence
    /// decoding]).
    decode_result<state> run(tape& t, const token_batch& batch, feeding_policy& policy,
                             state s0 = {}, std::size_t training_step = 0) const
    {
        UNFOLD_CHECK(batch.steps > 0 && batch.inputs.size() == batch.steps * batch.batch &&
                         batch.targets.size() == batch.inputs.size(),
                     "decoder: a batch of {} steps × {} sequences needs that many inputs and "
                     "targets (got {} and {})",
                     batch.steps, batch.batch, batch.inputs.size(), batch.targets.size());
        UNFOLD_CHECK(batch.source.empty(),
                     "decoder: the batch has a source sequence (make_seq2seq_batch makes batches "
                     "for an encoder–decoder); a decoder alone reads its prompt as inputs "
                     "(make_batch)");
        decode_result<state> r;
        r.final_state = s0.empty() ? zero_state(t, batch.batch) : std::move(s0);
        policy.begin(batch.batch, training_step);
        std::vector<recurrent_dropout_cell<Cell>> dropped; // Note [Recurrent dropout]
        if (m_generator && m_recurrent_dropout > 0)
            for (std::size_t l = 0; l < num_layers(); ++l)
                dropped.push_back(with_recurrent_dropout(m_cells.cell(l), t, *m_generator,
                                                         batch.batch, 0, m_cells.output_size(),
                                                         {0, m_recurrent_dropout}));
        auto dropped_cell = [&](std::size_t l) -> const auto& { return dropped[l]; };
        if (policy.feeds_observed() && !t.records_contributions())
        {
            if (dropped.empty())
                run_observed([this](std::size_t l) -> const Cell& { return m_cells.cell(l); }, t,
                             batch, r);
            else
                run_observed(dropped_cell, t, batch, r);
            return r;
        }
        feed_steps(
            t, batch, policy, r.logits, r.fed,
            [&](const std::vector<std::size_t>& fed) {
                return dropped.empty() ? step(t, fed, r.final_state)
                                       : step_through(dropped_cell, t, fed, r.final_state);
            },
            m_cells.memory());
        return r;
    }

    /// Free-running generation for one sequence: feeds `prompt` (at least one token), then the
    /// model's own choices, until `stop` is produced or `length` tokens were generated. Returns
    /// the generated tokens (without the prompt; with `stop` if it was produced). Sampling draws
    /// from the `top_k` most likely tokens only when top_k > 0 (choose_tokens).
    std::vector<std::size_t> generate(const std::vector<std::size_t>& prompt, std::size_t length,
                                      std::size_t stop, token_choice how, generator* g = nullptr,
                                      double temperature = 1, std::size_t top_k = 0) const
    {
        UNFOLD_CHECK(!prompt.empty(), "decoder: generation needs a prompt of at least one token");
        no_grad_guard no_grad;
        tape t;
        state s = zero_state(t, 1);
        var logits;
        std::size_t k = 0;
        for (std::size_t token : prompt)
        {
            const step_scope at(k++);
            logits = step(t, {token}, s);
        }
        std::vector<std::size_t> out;
        while (out.size() < length)
        {
            const std::size_t next = choose_tokens(logits.value(), how, g, temperature, top_k)[0];
            out.push_back(next);
            if (next == stop)
                break;
            const step_scope at(k++);
            logits = step(t, {next}, s);
        }
        return out;
    }

private:
    embedding m_embed;
    layer<Cell> m_cells;
    linear m_head;
    generator* m_generator = nullptr; // set in training mode
    real m_recurrent_dropout = 0;
};

/// A decoder with new parameters in `store`: "embed.weight" (V, E), the layer's
/// "rnn.weight_ih_l{l}", ... and "head.weight" (V, H) ((V, P) for an LSTM with projection),
/// "head.bias" (V). `make_layer(store,
/// input_size, layer_options)` builds the layer, e.g. with gru_layer. `dropout` is the layer's
/// dropout between stacked cells (layer_options::dropout), applied only in training mode.
template <class MakeLayer>
auto make_decoder(param_store& store, std::size_t vocab, std::size_t embed_dim,
                  std::size_t hidden_size, std::size_t num_layers, generator& g,
                  MakeLayer&& make_layer, real dropout = 0)
{
    embedding e = embedding::create(store, vocab, embed_dim, g, "embed.");
    layer_options lo;
    lo.num_layers = num_layers;
    lo.dropout = dropout;
    lo.prefix = "rnn.";
    auto cells = make_layer(store, embed_dim, lo);
    UNFOLD_CHECK(cells.hidden_size() == hidden_size,
                 "make_decoder: hidden size {} but make_layer built a layer of hidden size {}",
                 hidden_size, cells.hidden_size());
    linear head = linear::create(store, cells.output_size(), vocab, g, "head.");
    using cell_type = typename decltype(cells)::cell_type;
    return decoder<cell_type>(std::move(e), std::move(cells), std::move(head));
}

} // namespace unfold
