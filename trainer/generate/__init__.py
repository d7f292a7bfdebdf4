"""Generation and GenPPL (SIMS / SlamKit): continue prompts with the speech LM, turn unit
continuations into audio with a unit vocoder, transcribe them with Whisper, and score the
transcripts with a text LM.

    sampling  prompts file -> token ids -> sampled continuations (temperature, top-k, max new tokens)
    vocoder   the Vocoder interface; UnitHifiGan loads a speech-resynthesis unit HiFi-GAN folder
    asr       the ASR interface; WhisperASR loads a local Whisper folder through transformers
    textlm    perplexity of texts under a local causal text LM
    genppl    the chain and its result (exp of the mean per-transcript NLL, SlamKit's asr_perplexity)
    cli       `scaling generate` and the GenPPL options of `scaling eval`
"""
