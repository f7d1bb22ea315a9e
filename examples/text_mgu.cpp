// A user's cell as a character language model, trained, scored and sampled with the same library
// code as `unfold train --text`, `unfold eval` and `unfold sample`: the corpus and its held-out
// split, parallel streams cut into truncated-BPTT chunks with the state carried between chunks,
// the held-out score in bits per character, and sampling with a temperature and top-k.
//     text_mgu FILE [EPOCHS]
#include "mgu.hpp"

#include <cstdio>
#include <string>

int main(int argc, char** argv)
{
    using namespace example;
    if (argc < 2 || argc > 3)
    {
        std::fprintf(stderr, "usage: text_mgu FILE [EPOCHS]\n");
        return 2;
    }
    try
    {
        const std::size_t embed = 32, hidden = 128, streams = 16, chunk = 32;
        const std::size_t epochs = argc == 3 ? std::stoul(argv[2]) : 10;
        const text_corpus corpus = text_corpus::load(argv[1]);
        generator g(7);
        param_store store;
        using lm = decoder<mgu_cell>;
        lm model = make_decoder(
            store, corpus.vocab.size(), embed, hidden, 1, g,
            [&](param_store& s, std::size_t in, const layer_options& lo) {
                return layer<mgu_cell>("mgu", s, in, hidden, lo,
                                       [&](param_store& cs, std::size_t n, const param_name& name) {
                                           return mgu_cell::create(cs, n, hidden, g, name);
                                       });
            });
        adam_options options;
        options.lr = 0.005;
        adam optimiser(params_of(store), options);
        const text_stream stream(corpus.train, streams, chunk);
        teacher_forcing teacher;
        const double first = score_text(model, corpus.valid).bits_per_char;
        std::printf("%s: %zu characters, %zu symbols; %zu chunks of %zu in %zu streams per epoch\n",
                    argv[1], corpus.train.size() + corpus.valid.size(), corpus.vocab.size(),
                    stream.chunks(), chunk, streams);
        double last = first;
        for (std::size_t epoch = 1; epoch <= epochs; ++epoch)
        {
            lm::carried_state carried; // each epoch reads the streams from their start
            for (std::size_t k = 0; k < stream.chunks(); ++k)
            {
                const token_batch b = stream.chunk(k);
                tape t;
                const auto r = model.run(t, b, teacher, lm::resume(t, carried));
                carried = lm::carry(r.final_state);
                optimiser.zero_grad();
                t.backward(sequence_loss(r, b));
                clip_grad_norm(optimiser.params(), 1);
                optimiser.step();
            }
            const text_score held_out = score_text(model, corpus.valid);
            last = held_out.bits_per_char;
            std::printf("epoch %zu: held-out %.3f bits per character, next character %.3f (%zu "
                        "scored)\n",
                        epoch, held_out.bits_per_char, held_out.next_char, held_out.characters);
        }
        const auto written = model.generate(text_prompt(corpus.vocab, "The "), 120, vocabulary::eos,
                                            token_choice::sample, &g, 0.8, 10);
        std::printf("sample: The %s\n", corpus.vocab.decode(written).c_str());
        std::printf("held-out bits per character fell from %.3f to %.3f\n", first, last);
        return last < first ? 0 : 1;
    }
    catch (const std::exception& e)
    {
        std::fprintf(stderr, "text_mgu: %s\n", e.what());
        return 2;
    }
}
