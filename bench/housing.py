"""A synthetic stand-in for the Ames housing data (De Cock, 2011), made deterministically.

The real file cannot be downloaded where the benchmarks run, and its shape is what matters:
2,930 rows, 73 feature columns of which 40 are text categoricals (3 to 25 levels, one level
usually dominant, some columns mostly missing) and 33 numeric ones (a few with missing values),
and a numeric SalePrice. `preprocessing: auto` one-hot encodes it to about 300 columns. The
price depends on a dozen columns (quality, size, age, neighbourhood) plus noise, so Ridge's
scores differ between alphas and mean something.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

QUALITY = ["Ex", "Gd", "TA", "Fa", "Po"]

#: name -> (levels, share missing). Level names never read as missing in pandas ("NA", "None").
CATEGORICAL: dict[str, tuple[list[str], float]] = {
    # A number in the Ames file, but a code (the dwelling's kind): read as text, as users recode it.
    "MSSubClass": ([f"SC{n}" for n in (20, 60, 50, 120, 30, 70, 160, 80, 90, 190, 85, 75, 45, 180, 40, 150)], 0.0),
    "MSZoning": (["RL", "RM", "FV", "RH", "C_all", "I_all", "A_agr"], 0.0),
    "Street": (["Pave", "Grvl", "Dirt"], 0.0),
    "Alley": (["Grvl", "Pave", "Gravel_Paved"], 0.93),
    "LotShape": (["Reg", "IR1", "IR2", "IR3"], 0.0),
    "LandContour": (["Lvl", "HLS", "Bnk", "Low"], 0.0),
    "Utilities": (["AllPub", "NoSewr", "NoSeWa"], 0.0),
    "LotConfig": (["Inside", "Corner", "CulDSac", "FR2", "FR3"], 0.0),
    "LandSlope": (["Gtl", "Mod", "Sev"], 0.0),
    "Neighborhood": ([
        "NAmes", "CollgCr", "OldTown", "Edwards", "Somerst", "NridgHt", "Gilbert", "Sawyer", "NWAmes",
        "SawyerW", "Mitchel", "BrkSide", "Crawfor", "IDOTRR", "Timber", "NoRidge", "StoneBr", "SWISU",
        "ClearCr", "MeadowV", "BrDale", "Blmngtn", "Veenker", "NPkVill", "Blueste",
    ], 0.0),
    "Condition1": (["Norm", "Feedr", "Artery", "RRAn", "PosN", "RRAe", "PosA", "RRNn", "RRNe"], 0.0),
    "Condition2": (["Norm", "Feedr", "Artery", "PosA", "PosN", "RRNn", "RRAn", "RRAe"], 0.0),
    "BldgType": (["1Fam", "TwnhsE", "Duplex", "Twnhs", "2fmCon"], 0.0),
    "HouseStyle": (["1Story", "2Story", "1.5Fin", "SLvl", "SFoyer", "2.5Unf", "1.5Unf", "2.5Fin"], 0.0),
    "RoofStyle": (["Gable", "Hip", "Gambrel", "Flat", "Mansard", "Shed"], 0.0),
    "RoofMatl": (["CompShg", "Tar&Grv", "WdShake", "WdShngl", "Metal", "Membran", "Roll", "ClyTile"], 0.0),
    "Exterior1st": ([
        "VinylSd", "MetalSd", "HdBoard", "Wd Sdng", "Plywood", "CemntBd", "BrkFace", "WdShing", "AsbShng",
        "Stucco", "BrkComm", "AsphShn", "Stone", "CBlock", "ImStucc", "PreCast",
    ], 0.0),
    "Exterior2nd": ([
        "VinylSd", "MetalSd", "HdBoard", "Wd Sdng", "Plywood", "CmentBd", "Wd Shng", "BrkFace", "Stucco",
        "AsbShng", "Brk Cmn", "ImStucc", "AsphShn", "Stone", "Other", "CBlock", "PreCast",
    ], 0.0),
    "MasVnrType": (["BrkFace", "Stone", "BrkCmn", "CBlock"], 0.6),
    "ExterQual": (["TA", "Gd", "Ex", "Fa"], 0.0),
    "ExterCond": (["TA", "Gd", "Fa", "Ex", "Po"], 0.0),
    "Foundation": (["PConc", "CBlock", "BrkTil", "Slab", "Stone", "Wood"], 0.0),
    "BsmtQual": (["TA", "Gd", "Ex", "Fa", "Po"], 0.03),
    "BsmtCond": (["TA", "Gd", "Fa", "Po", "Ex"], 0.03),
    "BsmtExposure": (["No", "Av", "Gd", "Mn"], 0.03),
    "BsmtFinType1": (["GLQ", "Unf", "ALQ", "Rec", "BLQ", "LwQ"], 0.03),
    "BsmtFinType2": (["Unf", "Rec", "LwQ", "BLQ", "ALQ", "GLQ"], 0.03),
    "Heating": (["GasA", "GasW", "Grav", "Wall", "OthW", "Floor"], 0.0),
    "HeatingQC": (QUALITY, 0.0),
    "CentralAir": (["Y", "N", "Partial"], 0.0),
    "Electrical": (["SBrkr", "FuseA", "FuseF", "FuseP", "Mix"], 0.001),
    "KitchenQual": (["TA", "Gd", "Ex", "Fa", "Po"], 0.0),
    "Functional": (["Typ", "Min2", "Min1", "Mod", "Maj1", "Maj2", "Sev", "Sal"], 0.0),
    "FireplaceQu": (["Gd", "TA", "Fa", "Ex", "Po"], 0.49),
    "GarageType": (["Attchd", "Detchd", "BuiltIn", "Basment", "2Types", "CarPort"], 0.05),
    "GarageFinish": (["Unf", "RFn", "Fin"], 0.05),
    "PavedDrive": (["Y", "N", "P"], 0.0),
    "Fence": (["MnPrv", "GdPrv", "GdWo", "MnWw"], 0.8),
    "SaleType": (["WD", "New", "COD", "ConLD", "CWD", "ConLI", "ConLw", "Con", "Oth", "VWD"], 0.0),
    "SaleCondition": (["Normal", "Partial", "Abnorml", "Family", "Alloca", "AdjLand"], 0.0),
}

#: The text columns whose level moves the price: the first levels are the better ones.
PRICED = {"ExterQual": 14_000.0, "KitchenQual": 12_000.0, "BsmtQual": 8_000.0, "SaleCondition": 6_000.0,
          "MSZoning": 5_000.0, "BldgType": 4_000.0}


def make_housing(rows: int = 2930, seed: int = 0) -> Any:
    """The table as a DataFrame: 73 feature columns and SalePrice, the same for the same arguments."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    quality = rng.normal(0.0, 1.0, rows)  # a latent "how good is the house" shared by many columns
    columns: dict[str, Any] = {}

    def skewed(levels: list[str], missing: float, lean: Any = None) -> Any:
        # Zipf-like shares (the first level dominates, as in Ames); ``lean`` tilts good houses
        # toward the first levels.
        weights = 1.0 / np.arange(1, len(levels) + 1) ** 1.3
        codes = rng.choice(len(levels), size=rows, p=weights / weights.sum())
        if lean is not None:
            shift = np.clip(np.round(-lean * 0.8 + rng.normal(0, 0.5, rows)), -2, 2).astype(int)
            codes = np.clip(codes + shift, 0, len(levels) - 1)
        values = np.array(levels, dtype=object)[codes]
        values[rng.random(rows) < missing] = np.nan
        return values

    for name, (levels, missing) in CATEGORICAL.items():
        columns[name] = skewed(levels, missing, lean=quality if name in PRICED else None)

    def with_missing(values: Any, share: float) -> Any:
        values = values.astype(float)
        values[rng.random(rows) < share] = np.nan
        return values

    year_built = np.clip(np.round(1975 + 22 * quality + rng.normal(0, 18, rows)), 1872, 2010)
    first_floor = np.round(np.exp(rng.normal(7.0, 0.3, rows)) + 80 * quality)
    second_floor = np.where(rng.random(rows) < 0.42, np.round(first_floor * rng.uniform(0.5, 1.0, rows)), 0)
    basement = np.where(rng.random(rows) < 0.97, np.round(first_floor * rng.uniform(0.6, 1.05, rows)), 0)
    finished = np.round(basement * rng.uniform(0, 1, rows))
    garage_cars = np.clip(np.round(1.8 + 0.6 * quality + rng.normal(0, 0.6, rows)), 0, 5)
    numeric = {
        "LotFrontage": with_missing(np.round(np.exp(rng.normal(4.2, 0.3, rows))), 0.17),
        "LotArea": np.round(np.exp(rng.normal(9.1, 0.5, rows))),
        "OverallQual": np.clip(np.round(6 + 1.4 * quality), 1, 10),
        "OverallCond": np.clip(np.round(5.5 + rng.normal(0, 1.1, rows)), 1, 9),
        "YearBuilt": year_built,
        "YearRemodAdd": np.maximum(year_built, np.clip(year_built + rng.integers(0, 40, rows), 1950, 2010)),
        "MasVnrArea": with_missing(np.where(rng.random(rows) < 0.4, np.round(np.exp(rng.normal(5, 0.8, rows))), 0), 0.008),
        "BsmtFinSF1": with_missing(finished, 0.001),
        "BsmtFinSF2": with_missing(np.where(rng.random(rows) < 0.12, np.round(rng.uniform(50, 800, rows)), 0), 0.001),
        "BsmtUnfSF": with_missing(basement - finished, 0.001),
        "TotalBsmtSF": with_missing(basement, 0.001),
        "1stFlrSF": first_floor,
        "2ndFlrSF": second_floor,
        "GrLivArea": first_floor + second_floor,
        "BsmtFullBath": with_missing(rng.choice([0, 1, 2], rows, p=[0.58, 0.41, 0.01]), 0.001),
        "FullBath": np.clip(np.round(1.5 + 0.4 * quality + 0.0008 * second_floor + rng.normal(0, 0.4, rows)), 0, 4),
        "HalfBath": rng.choice([0, 1, 2], rows, p=[0.63, 0.36, 0.01]),
        "BedroomAbvGr": np.clip(np.round((first_floor + second_floor) / 550 + rng.normal(0, 0.7, rows)), 0, 8),
        "KitchenAbvGr": rng.choice([0, 1, 2, 3], rows, p=[0.001, 0.953, 0.045, 0.001]),
        "TotRmsAbvGrd": np.clip(np.round((first_floor + second_floor) / 250 + rng.normal(0, 0.8, rows)), 2, 15),
        "Fireplaces": rng.choice([0, 1, 2, 3], rows, p=[0.49, 0.43, 0.075, 0.005]),
        "GarageYrBlt": with_missing(np.maximum(year_built, year_built + rng.integers(0, 5, rows)), 0.054),
        "GarageCars": with_missing(garage_cars, 0.001),
        "GarageArea": with_missing(np.round(garage_cars * rng.normal(270, 40, rows)), 0.001),
        "WoodDeckSF": np.where(rng.random(rows) < 0.48, np.round(np.exp(rng.normal(5.2, 0.6, rows))), 0),
        "OpenPorchSF": np.where(rng.random(rows) < 0.56, np.round(np.exp(rng.normal(3.8, 0.7, rows))), 0),
        "EnclosedPorch": np.where(rng.random(rows) < 0.16, np.round(rng.uniform(20, 400, rows)), 0),
        "3SsnPorch": np.where(rng.random(rows) < 0.013, np.round(rng.uniform(100, 400, rows)), 0),
        "ScreenPorch": np.where(rng.random(rows) < 0.09, np.round(rng.uniform(50, 400, rows)), 0),
        "PoolArea": np.where(rng.random(rows) < 0.004, np.round(rng.uniform(300, 800, rows)), 0),
        "MiscVal": np.where(rng.random(rows) < 0.035, np.round(np.exp(rng.normal(6.5, 1.0, rows))), 0),
        "MoSold": rng.choice(np.arange(1, 13), rows, p=np.array([3, 4, 7, 9, 13, 17, 15, 9, 6, 6, 6, 5]) / 100),
        "YrSold": rng.choice(np.arange(2006, 2011), rows, p=[0.22, 0.23, 0.21, 0.22, 0.12]),
    }
    columns.update(numeric)

    neighbourhoods = CATEGORICAL["Neighborhood"][0]
    premium = dict(zip(neighbourhoods, rng.normal(0, 25_000, len(neighbourhoods)), strict=True))
    price = (
        -1_195_000
        + 16_000 * numeric["OverallQual"]
        + 48 * numeric["GrLivArea"]
        + 22 * basement
        + 600 * year_built
        + 8_000 * garage_cars
        + 4_000 * numeric["Fireplaces"]
        + 1.2 * numeric["LotArea"]
        + np.array([premium[n] for n in columns["Neighborhood"]])
        + rng.normal(0, 32_000, rows)
    )
    for name, step in PRICED.items():
        levels = CATEGORICAL[name][0]
        rank = np.array([levels.index(v) if isinstance(v, str) else len(levels) / 2 for v in columns[name]])
        price -= step * (rank - 1)
    frame = pd.DataFrame(columns)
    frame["SalePrice"] = np.round(np.clip(price, 12_000, None))
    return frame


def write_housing(path: Path, rows: int = 2930, seed: int = 0) -> Path:
    """Write the table as CSV to ``path`` (a few MB; made at run time, never committed)."""
    make_housing(rows, seed).to_csv(path, index=False)
    return path
