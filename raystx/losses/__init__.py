"""Losses for training sentence-embedding models; names and arguments follow sentence-transformers."""

from __future__ import annotations

from raystx.losses.adaptive_layer import AdaptiveLayerLoss
from raystx.losses.angle import AnglELoss
from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.losses.batch_all_triplet import BatchAllTripletLoss
from raystx.losses.batch_hard_soft_margin_triplet import BatchHardSoftMarginTripletLoss
from raystx.losses.batch_hard_triplet import BatchHardTripletLoss, BatchHardTripletLossDistanceFunction
from raystx.losses.batch_semi_hard_triplet import BatchSemiHardTripletLoss
from raystx.losses.cached_gist_embed import CachedGISTEmbedLoss
from raystx.losses.cached_multiple_negatives_ranking import CachedMultipleNegativesRankingLoss
from raystx.losses.cached_multiple_negatives_symmetric_ranking import (
    CachedMultipleNegativesSymmetricRankingLoss,
)
from raystx.losses.contrastive import ContrastiveLoss, SiameseDistanceMetric
from raystx.losses.contrastive_tension import ContrastiveTensionLoss, ContrastiveTensionLossInBatchNegatives
from raystx.losses.cosent import CoSENTLoss
from raystx.losses.cosine_similarity import CosineSimilarityLoss
from raystx.losses.denoising_auto_encoder import DenoisingAutoEncoderLoss
from raystx.losses.distill_kl_div import DistillKLDivLoss
from raystx.losses.embed_distill import EmbedDistillLoss
from raystx.losses.gist_embed import GISTEmbedLoss
from raystx.losses.global_orthogonal_regularization import GlobalOrthogonalRegularizationLoss
from raystx.losses.margin_mse import MarginMSELoss
from raystx.losses.matryoshka import MatryoshkaLoss
from raystx.losses.matryoshka_2d import Matryoshka2dLoss
from raystx.losses.mega_batch_margin import MegaBatchMarginLoss
from raystx.losses.mse import MSELoss
from raystx.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
from raystx.losses.multiple_negatives_symmetric_ranking import MultipleNegativesSymmetricRankingLoss
from raystx.losses.online_contrastive import OnlineContrastiveLoss
from raystx.losses.softmax import SoftmaxLoss
from raystx.losses.triplet import TripletDistanceMetric, TripletLoss

__all__ = ["ColumnContract", "RaystxLoss"]
__all__ += ["CoSENTLoss"]
__all__ += ["MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss"]
__all__ += ["GISTEmbedLoss", "CachedGISTEmbedLoss"]
__all__ += [
    "MultipleNegativesSymmetricRankingLoss",
    "CachedMultipleNegativesSymmetricRankingLoss",
    "MegaBatchMarginLoss",
    "GlobalOrthogonalRegularizationLoss",
]
__all__ += ["MatryoshkaLoss", "AdaptiveLayerLoss", "Matryoshka2dLoss"]
__all__ += [
    "AnglELoss",
    "BatchAllTripletLoss",
    "BatchHardSoftMarginTripletLoss",
    "BatchHardTripletLoss",
    "BatchHardTripletLossDistanceFunction",
    "BatchSemiHardTripletLoss",
    "ContrastiveLoss",
    "ContrastiveTensionLoss",
    "ContrastiveTensionLossInBatchNegatives",
    "CosineSimilarityLoss",
    "DenoisingAutoEncoderLoss",
    "DistillKLDivLoss",
    "EmbedDistillLoss",
    "MSELoss",
    "MarginMSELoss",
    "OnlineContrastiveLoss",
    "SiameseDistanceMetric",
    "SoftmaxLoss",
    "TripletDistanceMetric",
    "TripletLoss",
]
