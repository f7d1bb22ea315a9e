#pragma once
/// An encoder–decoder (sequence to sequence): an encoder reads the source, a decoder writes the
/// target one token at a time under a feeding policy (models/feeding.hpp), attending over the
/// encoder's outputs (models/attention.hpp) or, without attention, knowing the source only through
/// its initial state. Any cell with the cell contract works (Note [Cell contract]).
///
///     m         = encoder(F[x_1 … x_S])              (S, B, D·H), bidirectional by default
///     s_0       = tanh(last Wᵦᵀ + bᵦ)                 the encoder's final h of each direction,
///                                                    split into every decoder layer's state
///     c_t       = attend(m, h_{t−1}^(L))             the top layer's previous h is the query
///     s_t^(1)   = cell_1([E[y_t]; c_t], s_{t−1}^(1)) y_0 = `<s>`; y_t (t ≥ 1) chosen by the policy
///     s_t^(l)   = cell_l(h_t^(l−1), s_{t−1}^(l))
///     logits_t  = [h_t^(L); c_t] Wᵀ + b              (B, V); without attention c_t is absent
///
/// This is Bahdanau et al.'s decoder (2015) with either score. The parameters are named by part:
/// "source_embed.weight", "encoder.weight_ih_l0", ..., "embed.weight", "decoder.weight_ih_l0",
/// ..., "bridge.weight", "attn.…" and "head.weight". The head is one linear map shared by
/// every step, so its gradient is the sum of every step's share, as W_hh's is.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

#include <unfold/framework/grad_mode.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/models/attention.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/models/decoder.hpp>
#include <unfold/models/embedding.hpp>
#include <unfold/models/feeding.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/linear.hpp>
#include <unfold/models/site.hpp>
#include <unfold/ops/concat.hpp>
#include <unfold/ops/gather_rows.hpp>
#include <unfold/ops/log_softmax.hpp>
#include <unfold/ops/slice.hpp>
#include <unfold/ops/tanh.hpp>

namespace unfold
{

/// What an encoder–decoder run records: decode_result's logits, fed tokens and final state, and
/// the attention weights of every step.
template <class State>
struct seq2seq_result : decode_result<State>
{
    std::vector<var> weights; ///< per step, (B, S); empty without attention
};

/// One hypothesis of beam search.
struct hypothesis
{
    std::vector<std::size_t> tokens; ///< what was written, ending with `</s>` if it ended
    double log_prob = 0;             ///< Σ log p(token) over `tokens`
    double score = 0;                ///< log_prob / |tokens|^length_penalty, which ranks them
    bool ended = false;              ///< true when the last token is `</s>`
    /// The attention weights over the source when writing each token (S each); empty without
    /// attention.
    std::vector<std::vector<real>> weights;
};

/// How beam search runs.
struct beam_options
{
    std::size_t width = 4;       ///< k hypotheses kept at every step; ≥ 1
    std::size_t max_length = 64; ///< tokens written at most, `</s>` included
    /// α in score = log p / length^α: 0 ranks by probability (favouring short hypotheses), 1 by
    /// the mean log-probability per token.
    double length_penalty = 1;
};

/// An encoder, a bridge to the decoder's initial state, a decoder with optional attention, and
/// a head (see the file's comment).
template <class Cell>
class seq2seq
{
public:
    using cell_state = typename Cell::state; ///< one layer's state
    /// One cell state per decoder layer, bottom first.
    using state = std::vector<cell_state>;

    /// A source batch encoded: the attention memory and the decoder's initial state.
    struct encoded
    {
        attention_memory memory; ///< values (S, B, D·H) and the mask of valid positions
        state initial;           ///< the decoder's s_0
    };

    /// The parts (make_seq2seq builds them): `encoder` reads source embeddings, `bridge` maps its
    /// `last` output to every state part of every decoder layer, `decoder` is unidirectional and
    /// reads embeddings (and the context, with attention), `head` reads the decoder's output
    /// (and the context).
    seq2seq(embedding source_embed, layer<Cell> encoder, linear bridge, embedding embed,
            layer<Cell> decoder, std::optional<attention> attend, linear head)
        : m_source_embed(std::move(source_embed))
        , m_encoder(std::move(encoder))
        , m_bridge(std::move(bridge))
        , m_embed(std::move(embed))
        , m_decoder(std::move(decoder))
        , m_attention(std::move(attend))
        , m_head(std::move(head))
    {
        const std::size_t memory = memory_size(), context = m_attention ? memory : 0;
        UNFOLD_CHECK(m_source_embed.weight.shape()[1] == m_encoder.input_size(),
                     "seq2seq: source embeddings of width {} for an encoder reading {} features",
                     m_source_embed.weight.shape()[1], m_encoder.input_size());
        UNFOLD_CHECK(m_decoder.directions() == 1, "seq2seq: the decoder must be unidirectional");
        UNFOLD_CHECK(m_embed.weight.shape()[1] + context == m_decoder.input_size(),
                     "seq2seq: the decoder reads {} features but is given embeddings of width {}{}",
                     m_decoder.input_size(), m_embed.weight.shape()[1],
                     context ? fmt::format(" and a context of {}", context) : std::string());
        UNFOLD_CHECK(m_bridge.weight.shape() == shape_type({bridged_size(), memory}),
                     "seq2seq: a bridge of shape {}, but the encoder gives {} features and the "
                     "decoder's state has {}",
                     shape_str(m_bridge.weight.shape()), memory, bridged_size());
        UNFOLD_CHECK(!m_attention || (m_attention->memory_size() == memory &&
                                      m_attention->query_size() == m_decoder.output_size()),
                     "seq2seq: attention over {} memory features with {}-feature queries, but "
                     "the encoder gives {} and the decoder's h has {}",
                     m_attention ? m_attention->memory_size() : 0,
                     m_attention ? m_attention->query_size() : 0, memory, m_decoder.output_size());
        UNFOLD_CHECK(
            m_head.weight.shape() == shape_type({vocab_size(), m_decoder.output_size() + context}),
            "seq2seq: a head of shape {} for {} features and a vocabulary of {}",
            shape_str(m_head.weight.shape()), m_decoder.output_size() + context, vocab_size());
    }

    /// The target vocabulary's size V.
    std::size_t vocab_size() const { return m_embed.weight.shape()[0]; }
    /// The source vocabulary's size.
    std::size_t source_vocab_size() const { return m_source_embed.weight.shape()[0]; }
    /// D·H: the features of each encoder output.
    std::size_t memory_size() const { return m_encoder.directions() * m_encoder.output_size(); }
    /// The attention, if any.
    const std::optional<attention>& attends() const { return m_attention; }
    /// The encoder's layer.
    const layer<Cell>& encoder() const { return m_encoder; }
    /// The decoder's stacked cells, stepped one at a time by step().
    const layer<Cell>& decoder_cells() const { return m_decoder; }

    /// Training mode: both layers' dropout between stacked cells draws from `g`.
    void train(generator& g)
    {
        m_encoder.train(g);
        m_decoder.train(g);
    }
    /// Evaluation mode.
    void eval()
    {
        m_encoder.eval();
        m_decoder.eval();
    }
    /// What BPTT keeps of the encoder's and the decoder's steps in later runs (Note [Memory
    /// policies]).
    void set_bptt_memory(const bptt_memory& memory)
    {
        m_encoder.set_bptt_memory(memory);
        m_decoder.set_bptt_memory(memory);
    }

    /// Encodes `source` on `t`: the memory the decoder attends over and its initial state.
    encoded encode(tape& t, const source_batch& source) const
    {
        UNFOLD_CHECK(!source.empty() && source.tokens.size() == source.steps * source.batch &&
                         source.lengths.size() == source.batch,
                     "seq2seq: a source of {} steps × {} sequences needs that many tokens and {} "
                     "lengths (got {} and {})",
                     source.steps, source.batch, source.batch, source.tokens.size(),
                     source.lengths.size());
        for (std::size_t b = 0; b < source.batch; ++b)
            UNFOLD_CHECK(source.lengths[b] >= 1 && source.lengths[b] <= source.steps,
                         "seq2seq: source {} has length {}, outside [1, {}]", b, source.lengths[b],
                         source.steps);
        const var x = m_source_embed(t, source.tokens, {source.steps, source.batch});
        const layer_result r = m_encoder(t, x, {}, source.lengths);
        encoded e;
        e.memory = m_attention ? m_attention->remember(t, r.output, source.lengths)
                               : attention_memory{r.output, r.output, {}};
        const var bridged = label("bridge", [&] { return tanh(m_bridge(t, r.last)); });
        std::ptrdiff_t at = 0;
        const auto sizes = m_decoder.state_sizes();
        for (std::size_t l = 0; l < m_decoder.num_layers(); ++l)
        {
            typename state_traits<cell_state>::parts_type parts;
            for (std::size_t p = 0; p < parts.size(); ++p)
            {
                parts[p] = slice_cols(bridged, at, at + std::ptrdiff_t(sizes[p]));
                at += std::ptrdiff_t(sizes[p]);
            }
            e.initial.push_back(state_traits<cell_state>::from_parts(parts));
        }
        return e;
    }

    /// One decoding step: feeds `tokens` (B), advances `s` in place, returns the logits (B, V);
    /// with attention, the step's weights (B, S) go to `weights` when it is not null.
    var step(tape& t, const encoded& e, const std::vector<std::size_t>& tokens, state& s,
             var* weights = nullptr) const
    {
        const std::size_t B = e.memory.values.shape()[1];
        UNFOLD_CHECK(tokens.size() == B && s.size() == m_decoder.num_layers(),
                     "seq2seq: a step of {} tokens and {} layers of state for a source batch of "
                     "{} and {} decoder layers",
                     tokens.size(), s.size(), B, m_decoder.num_layers());
        var x = m_embed(t, tokens);
        var context;
        if (m_attention)
        {
            const attention_step a = (*m_attention)(t, e.memory, hidden(s.back()));
            context = a.context;
            if (weights)
                *weights = a.weights;
            x = concat({x, context}, 1);
        }
        for (std::size_t l = 0; l < s.size(); ++l)
        {
            const layer_scope in(l, false); // Note [Sites]
            s[l] = unfold::step(m_decoder.cell(l), t, x, s[l]);
            x = m_decoder.between_layers(hidden(s[l]), l);
        }
        return m_head(t, context.defined() ? concat({x, context}, 1) : x);
    }

    /// Encodes batch.source and decodes the target under `policy`, as decoder::run does: step 0
    /// is fed inputs(0, ·) (`<s>`), step t ≥ 1 what the policy chooses where the model predicted.
    seq2seq_result<state> run(tape& t, const token_batch& batch, feeding_policy& policy,
                              std::size_t training_step = 0) const
    {
        UNFOLD_CHECK(batch.steps > 0 && batch.inputs.size() == batch.steps * batch.batch &&
                         batch.targets.size() == batch.inputs.size(),
                     "seq2seq: a batch of {} steps × {} sequences needs that many inputs and "
                     "targets (got {} and {})",
                     batch.steps, batch.batch, batch.inputs.size(), batch.targets.size());
        UNFOLD_CHECK(batch.source.batch == batch.batch,
                     "seq2seq: a target batch of {} sequences with a source batch of {} (make "
                     "batches with make_seq2seq_batch)",
                     batch.batch, batch.source.batch);
        const encoded e = encode(t, batch.source);
        seq2seq_result<state> r;
        r.final_state = e.initial;
        policy.begin(batch.batch, training_step);
        feed_steps(
            t, batch, policy, r.logits, r.fed,
            [&](const std::vector<std::size_t>& fed) {
                var w;
                const var logits = step(t, e, fed, r.final_state, &w);
                if (w.defined())
                    r.weights.push_back(w);
                return logits;
            },
            m_decoder.memory());
        return r;
    }

    /// Decoding one source (token indices) without a target: feeds `start` (`<s>`), then the
    /// model's own choices (choose_tokens: the argmax, or a draw with `g`), until `stop` is written
    /// or `length` tokens were. Returns what was written (with `stop` if it was).
    std::vector<std::size_t> generate(const std::vector<std::size_t>& source, std::size_t start,
                                      std::size_t stop, std::size_t length, token_choice how,
                                      generator* g = nullptr, double temperature = 1,
                                      std::size_t top_k = 0) const
    {
        UNFOLD_CHECK(!source.empty(), "seq2seq: generation needs a source of at least one token");
        no_grad_guard no_grad;
        tape t;
        const encoded e = encode(t, {source.size(), 1, source, {source.size()}});
        state s = e.initial;
        std::vector<std::size_t> out;
        std::size_t next = start;
        while (out.size() < length && next != stop)
        {
            const step_scope at(out.size()); // Note [Sites]
            next = choose_tokens(step(t, e, {next}, s).value(), how, g, temperature, top_k)[0];
            out.push_back(next);
        }
        return out;
    }

    /// Beam search for one source sequence (token indices): keeps the `width` most likely
    /// hypotheses at every step, sets aside each one that writes `stop` while among the `width`
    /// most likely candidates, and ends when `width` have ended or after max_length tokens. Returns
    /// the ended hypotheses (or, if none ended, the unfinished ones) best score first. Width 1
    /// writes greedy decoding's answer.
    std::vector<hypothesis> beam_search(const std::vector<std::size_t>& source, std::size_t start,
                                        std::size_t stop, beam_options o = {}) const
    {
        UNFOLD_CHECK(o.width >= 1, "beam_search: a beam width of {}: it must be at least 1",
                     o.width);
        UNFOLD_CHECK(o.max_length >= 1, "beam_search: max_length must be at least 1");
        UNFOLD_CHECK(!source.empty(), "beam_search: the source is empty");
        UNFOLD_CHECK(o.length_penalty >= 0, "beam_search: length_penalty {} must be ≥ 0",
                     o.length_penalty);
        no_grad_guard no_grad;
        tape t;
        const std::size_t k = o.width, V = vocab_size();
        source_batch src; // the source once per beam row: every row attends over the same memory
        src.steps = source.size();
        src.batch = k;
        for (std::size_t token : source)
            src.tokens.insert(src.tokens.end(), k, token);
        src.lengths.assign(k, source.size());
        const encoded e = encode(t, src);
        state s = e.initial;
        const double dead = -std::numeric_limits<double>::infinity();
        std::vector<hypothesis> live(k), ended;
        for (std::size_t r = 1; r < k; ++r) // every row starts as <s>: only one may grow
            live[r].log_prob = dead;
        std::vector<std::size_t> fed(k, start);
        auto scored = [&](hypothesis h) {
            h.score = h.log_prob / std::pow(double(h.tokens.size()), o.length_penalty);
            return h;
        };
        for (std::size_t n = 0; n < o.max_length && ended.size() < k; ++n)
        {
            const step_scope at(n); // Note [Sites]
            var w;
            const tensor log_p = log_softmax_op{}.forward(step(t, e, fed, s, &w).value());
            struct candidate
            {
                double log_prob;
                std::size_t row, token;
            };
            std::vector<candidate> candidates;
            for (std::size_t r = 0; r < k; ++r)
            {
                if (live[r].log_prob == dead)
                    continue;
                const real* row = log_p.data() + r * V;
                for (std::size_t v = 0; v < V; ++v)
                    candidates.push_back({live[r].log_prob + double(row[v]), r, v});
            }
            const std::size_t keep = std::min(candidates.size(), 2 * k);
            std::partial_sort(candidates.begin(), candidates.begin() + std::ptrdiff_t(keep),
                              candidates.end(), [](const candidate& a, const candidate& b) {
                                  return a.log_prob != b.log_prob ? a.log_prob > b.log_prob
                                         : a.row != b.row         ? a.row < b.row
                                                                  : a.token < b.token;
                              });
            std::vector<hypothesis> next;
            std::vector<std::size_t> parents;
            for (std::size_t c = 0; c < keep && next.size() < k; ++c)
            {
                hypothesis h = live[candidates[c].row];
                h.tokens.push_back(candidates[c].token);
                h.log_prob = candidates[c].log_prob;
                if (w.defined())
                {
                    const real* row = w.value().data() + candidates[c].row * source.size();
                    h.weights.emplace_back(row, row + source.size());
                }
                if (candidates[c].token == stop)
                {
                    // Only an ending among the k best candidates counts: an unlikely early end
                    // must not fill the k places before a likely longer hypothesis ends.
                    h.ended = true;
                    if (c < k && ended.size() < k)
                        ended.push_back(scored(std::move(h)));
                    continue;
                }
                next.push_back(std::move(h));
                parents.push_back(candidates[c].row);
            }
            if (next.empty())
                break;
            while (next.size() < k) // rows nothing can grow from
            {
                next.push_back(hypothesis{});
                next.back().log_prob = dead;
                parents.push_back(parents.front());
            }
            for (auto& layer_state : s)
            {
                auto parts = state_traits<cell_state>::parts(layer_state);
                for (auto& part : parts)
                    part = gather_rows(part, parents);
                layer_state = state_traits<cell_state>::from_parts(parts);
            }
            live = std::move(next);
            for (std::size_t r = 0; r < k; ++r)
                fed[r] = live[r].tokens.empty() ? start : live[r].tokens.back();
        }
        std::vector<hypothesis> out = std::move(ended);
        if (out.empty())
            for (hypothesis& h : live)
                if (h.log_prob != dead)
                    out.push_back(scored(std::move(h)));
        std::stable_sort(out.begin(), out.end(), [](const hypothesis& a, const hypothesis& b) {
            return a.score > b.score;
        });
        return out;
    }

private:
    /// The features of the decoder's whole initial state: every part of every layer.
    std::size_t bridged_size() const
    {
        const auto sizes = m_decoder.state_sizes();
        return m_decoder.num_layers() * std::accumulate(sizes.begin(), sizes.end(), std::size_t(0));
    }

    embedding m_source_embed;
    layer<Cell> m_encoder;
    linear m_bridge;
    embedding m_embed;
    layer<Cell> m_decoder;
    std::optional<attention> m_attention;
    linear m_head;
};

/// The shape of an encoder–decoder.
struct seq2seq_options
{
    std::size_t source_vocab = 0; ///< the source's vocabulary
    std::size_t target_vocab = 0; ///< V, the target's vocabulary
    std::size_t embed = 64;       ///< width of both embeddings
    std::size_t hidden = 128;     ///< H of every encoder and decoder cell
    std::size_t layers = 1;       ///< stacked layers of the encoder and of the decoder
    bool bidirectional = true;    ///< a bidirectional encoder (D = 2)
    /// The score, or none: the decoder then knows the source only through s_0.
    std::optional<attention_kind> attend = attention_kind::additive;
    std::size_t attention_size = 0; ///< A of additive attention; 0: H
    real dropout = 0;               ///< between stacked layers, in training mode
};

/// An encoder–decoder with new parameters in `store` (see seq2seq's file comment for the names).
/// `make_layer(store, input_size, layer_options)` builds each layer, e.g. with lstm_layer.
template <class MakeLayer>
auto make_seq2seq(param_store& store, const seq2seq_options& o, generator& g,
                  MakeLayer&& make_layer)
{
    UNFOLD_CHECK(o.source_vocab > 0 && o.target_vocab > 0 && o.embed > 0 && o.hidden > 0 &&
                     o.layers > 0,
                 "make_seq2seq: vocabularies {} and {}, embed {}, hidden {} and layers {} must be "
                 "positive",
                 o.source_vocab, o.target_vocab, o.embed, o.hidden, o.layers);
    embedding source_embed = embedding::create(store, o.source_vocab, o.embed, g, "source_embed.");
    layer_options lo;
    lo.num_layers = o.layers;
    lo.dropout = o.dropout;
    lo.bidirectional = o.bidirectional;
    lo.prefix = "encoder.";
    auto encoder = make_layer(store, o.embed, lo);
    using layer_type = decltype(encoder);
    const std::size_t memory = encoder.directions() * encoder.output_size();
    embedding embed = embedding::create(store, o.target_vocab, o.embed, g, "embed.");
    lo.bidirectional = false;
    lo.prefix = "decoder.";
    const std::size_t context = o.attend ? memory : 0;
    layer_type decoder = make_layer(store, o.embed + context, lo);
    std::size_t bridged = 0; // every part of every decoder layer's state
    for (std::size_t size : decoder.state_sizes())
        bridged += o.layers * size;
    linear bridge = linear::create(store, memory, bridged, g, "bridge.");
    std::optional<attention> attend;
    if (o.attend)
        attend = attention::create(store, *o.attend, memory, decoder.output_size(),
                                   o.attention_size ? o.attention_size : o.hidden, g, "attn.");
    linear head =
        linear::create(store, decoder.output_size() + context, o.target_vocab, g, "head.");
    return seq2seq<typename layer_type::cell_type>(
        std::move(source_embed), std::move(encoder), std::move(bridge), std::move(embed),
        std::move(decoder), std::move(attend), std::move(head));
}

} // namespace unfold
