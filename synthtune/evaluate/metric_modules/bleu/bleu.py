"""Corpus BLEU with sacrebleu (one reference per prediction), 0-100. Offline, local module."""
import datasets
import evaluate

_DESCRIPTION = "sacrebleu corpus BLEU with default settings (13a tokenization, exp smoothing), 0-100."


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description="predictions, references: lists of str",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        import sacrebleu

        if not predictions:
            return {"bleu": 0.0}
        return {"bleu": float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)}
