from setuptools import find_packages, setup

setup(
    name="hf-reservoir",
    version="0.1.0",
    description="Reservoir Transformers (Shen et al., ACL 2021) for HuggingFace Transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["hf_reservoir", "hf_reservoir.*"]),
    package_data={"hf_reservoir.hub": ["model_card_template.md"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1,<3",
        "transformers>=5.0,<6",
        "accelerate>=1.0,<2",
        "datasets>=3.0,<6",
        "huggingface_hub>=1.0,<3",
        "safetensors>=0.4",
        "sentencepiece>=0.2,<0.3",
        "sacrebleu>=2.4,<3",
        "matplotlib>=3.7",
        "pyyaml>=6",
        "tqdm>=4.60",
        "jinja2>=3",
    ],
    # ja: BLEU on Japanese with sacrebleu's ja-mecab tokenizer (MeCab and its dictionary, from PyPI).
    extras_require={"dev": ["pytest>=8", "ruff>=0.6", "tensorboard>=2.14", "hypothesis>=6.100"], "ja": ["sacrebleu[ja]>=2.3"], "ctranslate2": ["ctranslate2>=4.4,<5"]},
    entry_points={"console_scripts": ["hf-reservoir=hf_reservoir.cli:main"]},
    license="Apache-2.0",
    license_files=["LICENSE"],
)
